import re
from compliance import db
from compliance.models import Export

def test_probe(client, as_role, work, tmp_path, clock, capsys):
    h = as_role("csm")
    t = client.post("/api/v1/tenants", headers=h, json={"external_ref": "dl-1", "name": "X GmbH", "region": "DE"}).get_json()
    r = client.post("/api/v1/sources", headers=h, json={"kind": "demo", "name": "demo-src", "tenant_id": t["id"], "config": {"rows": 2000, "state_dir": str(tmp_path/"demo")}})
    assert r.status_code == 201, r.get_json()
    req = client.post("/api/v1/requests", headers=h, json={"tenant_id": t["id"], "requested_by": "cfo@x", "channel": "email", "churn_reason": "price", "owner": "csm@o.example"}).get_json()
    for a in ("acknowledge", "approve"):
        assert client.post(f"/api/v1/requests/{req['id']}/{a}", headers=h).status_code == 200
    e = client.post(f"/api/v1/requests/{req['id']}/exports", json={}, headers=h).get_json()
    work()
    e = client.get(f"/api/v1/exports/{e['id']}", headers=h).get_json()
    print(e["status"], e["bundle_bytes"], e.get("manifest"))
    l = client.post(f"/api/v1/exports/{e['id']}/links", headers=h, json={"recipient": "a@b.example"})
    print(l.status_code, l.get_json())
    tok = l.get_json()["url"].rsplit("/", 1)[1]
    hd = client.head(f"/d/{tok}/bundle.zip")
    print(hd.status_code, dict(hd.headers), len(hd.data))
    g = client.get(f"/d/{tok}/bundle.zip", headers={"Range": "bytes=0-99"})
    print(g.status_code, dict(g.headers), len(g.data))
    p = client.get(f"/d/%20{tok}")
    print(p.status_code)
    assert 0, capsys

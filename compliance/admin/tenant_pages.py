"""SKELETON (replaced by the page's owner)."""

from __future__ import annotations

from flask import render_template_string

from compliance.admin import bp
from compliance.auth import requires
from compliance.models import ROLES


@bp.route("/tenants")
@requires(*ROLES)
def tenants() -> str:
    return render_template_string('{% extends "admin/base.html" %}{% block title %}tenants{% endblock %}'
                                  '{% block content %}<h1>tenants</h1>{% endblock %}')

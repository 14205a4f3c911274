"""SKELETON (replaced by the page's owner)."""

from __future__ import annotations

from flask import render_template_string

from compliance.admin import bp
from compliance.auth import requires
from compliance.models import ROLES


@bp.route("/audit")
@requires(*ROLES)
def audit() -> str:
    return render_template_string('{% extends "admin/base.html" %}{% block title %}audit{% endblock %}'
                                  '{% block content %}<h1>audit</h1>{% endblock %}')

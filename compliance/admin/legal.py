"""SKELETON (replaced by the page's owner)."""

from __future__ import annotations

from flask import render_template_string

from compliance.admin import bp
from compliance.auth import requires
from compliance.models import ROLES


@bp.route("/legal")
@requires(*ROLES)
def legal() -> str:
    return render_template_string('{% extends "admin/base.html" %}{% block title %}legal{% endblock %}'
                                  '{% block content %}<h1>legal</h1>{% endblock %}')

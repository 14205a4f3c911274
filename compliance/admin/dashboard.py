"""The dashboard: the figures of ``compliance.reports`` (the same the reports API answers),
drawn as server-side SVG with their numbers in text beside."""

from __future__ import annotations

from datetime import datetime

from flask import render_template

from compliance import reports
from compliance.admin import bp, charts
from compliance.admin.formatting import label
from compliance.auth import requires
from compliance.models import ROLES
from compliance.survey import REASONS as SURVEY_REASONS


@bp.route("/")
@requires(*ROLES)
def dashboard() -> str:
    figures = reports.dashboard()
    months = [_month(key) for key in figures.churn.months]
    reasons = charts.colours(list(figures.churn.series))
    series = [charts.Series(label(reason), reasons[reason], counts)
              for reason, counts in figures.churn.series.items()]
    return render_template(
        "admin/dashboard.html", figures=figures, months=months, reasons=reasons, duration=duration,
        states_chart=charts.bars("states", "Open requests by state", "Open requests per state.",
                                 [(label(state), count) for state, count in figures.open_by_state.items()]),
        churn_chart=charts.stacked_columns("churn", "Churn reasons per month",
                                           "Offboarding requests received per month, by churn reason.",
                                           months, series),
        survey_reasons=SURVEY_REASONS,
        feedback_chart=charts.bars("feedback-reasons", "Exit survey: main reason",
                                   "Survey answers per main reason.",
                                   [(SURVEY_REASONS[reason], figure.count)
                                    for reason, figure in figures.feedback.reasons.items()],
                                   charts.PALETTE[2]),
        ratings_chart=charts.bars("feedback-ratings", "Exit survey: overall rating",
                                  "Answers per rating from 1 to 10.",
                                  [(str(score), count) for score, count in
                                   enumerate(figures.feedback.ratings, start=1)], charts.PALETTE[4]))


def _month(key: str) -> str:
    """``2026-03`` -> ``Mar 2026``."""
    return datetime.strptime(key, "%Y-%m").strftime("%b %Y")


def duration(seconds: int | None) -> str:
    """Exact enough to hold against the 72-hour promise: minutes, hours for the first week, then days."""
    if seconds is None:
        return "—"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 7 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"

"""The customer's exit survey: ``/survey/<token>``, reached from the invitation e-mail.

No login: the signed single-use token is the credential. Answers are optional and checked
here, with each message beside its field; the form carries a CSRF token bound to the browser's
session; nothing is cached and the URL never leaks through a Referer.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, render_template, request
from flask_wtf.csrf import CSRFError
from marshmallow import Schema, fields, validate

from compliance import db, feedback
from compliance.admin import csrf
from compliance.admin.forms import load
from compliance.auth import public
from compliance.models.feedback import SURVEY_REASONS, WOULD_RETURN

bp = Blueprint("survey", __name__)
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
REASONS = {
    "technical_issues": "Technical issues",
    "too_expensive": "Too expensive",
    "switched_product": "Switched to another product",
    "unclear_how_to_use": "Not sure how to use it",
    "missing_features": "Missing features",
    "other": "Something else",
}
RETURN = {"yes": "Yes", "maybe": "Maybe", "no": "No"}
GONE = {
    "answered": ("Thank you, this survey is already answered",
                 "Each survey link takes one set of answers, and this one has been used."),
    "expired": ("This survey has closed", "Survey links work for 30 days, and this one has ended."),
}


class SurveyIn(Schema):
    reason = fields.String(validate=validate.OneOf(SURVEY_REASONS, error="Choose one of the reasons listed."))
    reason_other = fields.String(validate=validate.Length(max=2000))
    could_improve = fields.String(validate=validate.Length(max=4000))
    rating = fields.Integer(validate=validate.Range(1, 10, error="Give a number from 1 to 10."),
                            error_messages={"invalid": "Give a whole number from 1 to 10."})
    would_return = fields.String(validate=validate.OneOf(WOULD_RETURN, error="Choose yes, maybe or no."))
    recommend = fields.Integer(validate=validate.Range(0, 10, error="Give a number from 0 to 10."),
                               error_messages={"invalid": "Give a whole number from 0 to 10."})


def init_app(app: Flask) -> None:
    for limiter in app.extensions.get("limiter", ()):  # the download pages' limiter, when there is one
        limiter.shared_limit("30 per minute", scope="survey")(bp)
    app.register_blueprint(bp)
    app.after_request(_private_answers)


@bp.before_request
def _protect_form() -> None:
    if request.method == "POST":
        csrf.protect()


@bp.route("/survey/<token>", methods=["GET", "POST"])
@public
def survey(token: str) -> str | tuple[str, int]:
    try:
        invitation = feedback.resolve(token)
    except feedback.SurveyError as error:
        return _refused(error)
    errors: dict[str, str] = {}
    values = request.form
    if request.method == "POST":
        answers, errors = load(SurveyIn(), request.form)
        if not errors:
            try:
                feedback.submit(token, answers)
            except feedback.SurveyError as error:
                db.session.rollback()
                return _refused(error)
            db.session.commit()
            return render_template("survey/thanks.html")
    status = 400 if errors else 200
    return render_template("survey/form.html", token=token, errors=errors, values=values,
                           reasons=REASONS, returns=RETURN, expires_at=invitation.expires_at), status


@bp.errorhandler(CSRFError)
def _csrf_refused(_error: CSRFError) -> tuple[str, int]:
    return render_template("survey/refused.html", heading="Your answers were not sent",
                           explanation="The form's security token was missing or had expired. Go back, "
                                       "reload the page and send it again."), 400


def _refused(error: feedback.SurveyError) -> tuple[str, int]:
    if not error.gone:
        return _unknown()
    heading, explanation = GONE[error.outcome]
    return render_template("survey/refused.html", heading=heading, explanation=explanation), 410


def _unknown() -> tuple[str, int]:
    return render_template("survey/refused.html", heading="Survey not found",
                           explanation="This survey link is not valid. Check that it was copied whole."), 404


def _private_answers(response: Response) -> Response:
    if request.blueprint == "survey":
        response.headers.update(NO_STORE)
    return response

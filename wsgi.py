"""WSGI entry point for deployment: ``gunicorn wsgi:app``."""

from compliance.app import create_app

app = create_app()

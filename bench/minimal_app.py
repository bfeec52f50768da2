"""The HTTP baseline of bench_http.py: the smallest useful Flask app, served like Hexie."""
from flask import Flask

app = Flask(__name__)


@app.get("/ping")
def ping():
    """A small JSON body, as an API answer would be."""
    return {"ok": True, "items": [], "total": 0}

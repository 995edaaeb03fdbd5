"""The OpenAPI document at GET /v2/openapi.json: it matches the URL map, and schemathesis, fuzzing every
documented operation through the app's WSGI interface (real SQLite, Redis, SeaweedFS, the session's
Celery worker), never gets a 5xx. A bounded, derandomized number of examples per operation."""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from clearcut import accounts
from clearcut.db import sessionmaker_for, upgrade

pytestmark = pytest.mark.timeout(600)
EXAMPLES = 12


@pytest.fixture(scope="module")
def app(service_env, celery_worker, model_dir):
    mp = pytest.MonkeyPatch()
    settings_ = {**service_env, "CLEARCUT_SYNC_TIMEOUT_S": "5", "CLEARCUT_URL_TIMEOUT_S": "2",
                 "CLEARCUT_RATE_LIMIT_PER_MINUTE": "0"}
    for name, value in settings_.items():
        mp.setenv(name, value)
    upgrade(service_env["CLEARCUT_DATABASE_URL"])
    from app import create_app

    flask_app = create_app(settings_)
    yield flask_app
    mp.undo()


@pytest.fixture(scope="module")
def key(app):
    with sessionmaker_for(app.config["CLEARCUT_SETTINGS"]["CLEARCUT_DATABASE_URL"]).begin() as session:
        account = accounts.get_or_create_account(session, "schemathesis")
        return accounts.create_key(session, account)[1]


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/v2/openapi.json", app)


def test_document_matches_the_url_map(app):
    doc = app.test_client().get("/v2/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and doc["components"]["securitySchemes"]["ApiKey"]["name"] == "x-api-key"
    rules = {}
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<", "{").replace(">", "}")
        rules.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    for path, item in doc["paths"].items():
        methods = {m for m in item if m != "parameters"}
        assert path in rules, f"documented path {path} is not served"
        assert methods <= rules[path], f"{path}: documents {methods}, serves {rules[path]}"
    public = {p for p in rules if p.startswith("/v2") or p in ("/v1.0/removebg", "/v1/segment",
                                                                "/remove-background/v1")}
    missing = public - set(doc["paths"])
    assert not missing, f"served but not documented: {sorted(missing)}"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_no_5xx_for_any_documented_request(api_schema, key, mode):
    """Every operation, valid (positive) and schema-violating (negative) requests: never a 5xx.

    (schemathesis' own pytest plugin does not run under this pytest, so the operations are driven
    with hypothesis directly; the checks are schemathesis' own.)"""
    failures, calls = [], []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            response = case.call(headers={"x-api-key": key})
            calls.append(response.status_code)
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except Exception as exc:  # noqa: BLE001 - collected, reported together below
                failures.append(f"{operation.label}: {response.status_code} {response.text[:300]} ({exc})")

        try:
            run()
        except Unsatisfiable:  # nothing to violate (e.g. no parameters and no body): no negative case
            assert mode is GenerationMode.NEGATIVE
    assert len(calls) >= 2 * len(list(api_schema.get_all_operations())), "too few requests were generated"
    assert not failures, "\n".join(failures[:20])

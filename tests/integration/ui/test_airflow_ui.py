"""The Airflow 3 UI in a real browser: headless Chromium (Playwright on the system's Chromium, no
browser download) logs in through the UI's login form, triggers taxi_training from the DAG's
trigger dialog and watches the run succeed, then backfills three hours of
feast_materialize_hourly from the same dialog's Backfill mode and watches every run succeed.

The stack (api-server, scheduler, dag-processor, triggerer on PostgreSQL; fixtures/airflow.py)
runs on the session's built feature store and MLflow server, parses only the two DAG files it
needs and starts nothing by itself (TAXI_TRAINING_CRON=none; the materialization DAG stays
paused until its backfill). What the runs write stays out of the session's state: a copy of the
Feast registry and online store, run dirs, reports and Bento store of its own, and a model name
of its own (`chicago_taxi_fare_ui`) whose champion is the session champion's model, so the
training run is judged against a champion as in production without moving the session's aliases.

The REST API cross-checks what the UI showed: the run was created by the UI (run_type `manual`,
triggered_by `ui`, queued after the click), and the backfill exists with the range, reprocess
behaviour and max active runs picked in the dialog, its three runs all successful.

Each step is screenshotted; a failure keeps them in $TAXI_UI_SCREENSHOTS/<test>, else
logs/ui-tests/<test>, and names that directory in the failure message. `[timing]` lines (stack
start, triggered run, backfill) print with `-s`.
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest

from chicago_taxi.features.aggregates import EVENT_TIMESTAMP
from chicago_taxi.features.store import views_for_cadence
from fixtures.airflow import AirflowStack, Timings, dag_folder
from fixtures.browser import launch_chromium, log_in, screenshots_kept_on_failure
from fixtures.training import MODEL, seed_champion

TRAINING, HOURLY = "taxi_training", "feast_materialize_hourly"
STACK_DAGS = ("taxi_training.py", "feast_materialize.py")  # feast_materialize.py also defines the half-hourly DAG (left paused)
UI_MODEL = f"{MODEL}_ui"
BACKFILL_HOURS = 3
UI_TIMEOUT_MS = 60_000
TIMINGS = Timings("ui summary")
timed = TIMINGS.timed
report_timings = TIMINGS.report_fixture()


# ---------------------------------------------------------------- the stack
@pytest.fixture(scope="module")
def ui_stack(stack, first_run, tmp_path_factory):
    """A started AirflowStack parsing taxi_training and feast_materialize.py only; taxi_training
    unpaused (it only runs when triggered: TAXI_TRAINING_CRON=none and no asset events here)."""
    _, session_env = stack
    tmp = tmp_path_factory.mktemp("ui_airflow")
    dags = dag_folder(tmp, STACK_DAGS)
    feast = tmp / "feast"
    shutil.copytree(session_env["TAXI_FEAST_DIR"], feast, ignore=shutil.ignore_patterns("*.lock"))
    env = {
        **session_env,
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(tmp / "logs" / "airflow"),
        "TAXI_TRAINING_CRON": "none",
        "TAXI_EPOCHS": "5",  # the UI test needs a run that succeeds, not a better model: a shorter train task
        "TAXI_MODEL_NAME": UI_MODEL,
        "TAXI_FEAST_DIR": str(feast),  # the session's offline store (read only) with its own registry and online store
        "TAXI_WORK_DIR": str(tmp / "var"),
        "TAXI_REPORTS_DIR": str(tmp / "reports"),
        "TAXI_LOGS_DIR": str(tmp / "logs"),
        "BENTOML_HOME": str(tmp / "bentoml"),
    }
    seeded = seed_champion(stack, UI_MODEL)
    airflow = AirflowStack(env)
    airflow.champion_version = seeded
    try:
        airflow.start()
        TIMINGS["stack start (healthy)"] = airflow.start_seconds
        print(f"\n[timing] ui airflow stack start (healthy): {airflow.start_seconds} s", flush=True)
        for dag_id in (TRAINING, HOURLY):
            airflow.wait_for_dag(dag_id)
        airflow.unpause(TRAINING)
        yield airflow
    finally:
        airflow.close()


@pytest.fixture
def page(ui_stack):
    """A fresh browser page (1400x1000) on the stack's UI, not logged in yet. Actions and `expect`
    wait up to UI_TIMEOUT_MS (a busy CI box renders a run page in well over expect's default 5 s)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        expect.set_options(timeout=UI_TIMEOUT_MS)
        try:
            context = browser.new_context(base_url=ui_stack.base_url, viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(UI_TIMEOUT_MS)
            yield context.new_page()
        finally:
            expect.set_options(timeout=None)  # back to Playwright's default for other modules
            browser.close()


# ---------------------------------------------------------------- UI helpers
def trigger_dialog(page, dag_id: str):
    """Open the DAG page and its trigger dialog (the header's Trigger button)."""
    from playwright.sync_api import expect

    page.goto(f"/dags/{dag_id}")
    expect(page.get_by_role("heading", name=dag_id, exact=True)).to_be_visible()
    page.get_by_role("button", name="Trigger").click()
    dialog = page.get_by_role("dialog").filter(has=page.get_by_role("heading", name=re.compile(rf"\b{dag_id}$")))
    expect(dialog).to_be_visible()
    return dialog


def choose(dialog, name: str) -> None:
    """Select a radio card of the dialog. Its input is visually hidden and the dialog may still be
    sliding in (a forced check then fails with "outside of the viewport"): the input's own click(),
    which is what a click on its card does, then wait until it is checked."""
    from playwright.sync_api import expect

    radio = dialog.get_by_role("radio", name=name)
    radio.evaluate("input => input.click()")
    expect(radio).to_be_checked()


def pick_datetime(page, dialog, field: str, when: datetime) -> None:
    """Fill a date-time field of the dialog (From, To): its button opens a popover with Date
    (YYYY/MM/DD) and Time (HH:mm) inputs, in UTC; the button again closes it."""
    from playwright.sync_api import expect

    opener = dialog.get_by_role("group").filter(has=page.get_by_text(field, exact=True)).get_by_test_id("datetime-input")
    date = page.get_by_placeholder("YYYY/MM/DD").filter(visible=True)
    # One popover at a time: the previous field's may still be closing (both visible failed in CI).
    expect(date).to_have_count(0)
    opener.click()
    expect(date).to_have_count(1)
    date.fill(f"{when:%Y/%m/%d}")
    page.get_by_placeholder("HH:mm").filter(visible=True).fill(f"{when:%H:%M}")
    opener.click()
    expect(opener).to_have_text(f"{when:%b %d, %Y %H:%M}")
    expect(date).to_have_count(0)


def run_state_badge(page, run_id: str):
    """The state badge beside the run's heading on its run page."""
    heading = page.get_by_role("heading", name=run_id, exact=True)
    return page.locator("div").filter(has=heading).last.get_by_test_id("state-badge")


def watch(describe, done, page, timeout: float, poll: float = 3, reload_after: float = 30, unreadable_for: float = 90) -> str:
    """Poll `describe()` (what the page shows now) until `done(shown)`; reload the page when it
    shows the same for `reload_after` s (the UI refreshes itself, this only guards that). Fails on
    timeout, and as soon as the page has been unreadable (`describe` raising) for `unreadable_for` s."""
    deadline, shown, since, unreadable = time.monotonic() + timeout, None, time.monotonic(), None
    while True:
        try:
            now, unreadable = describe(), None
        except Exception as exc:  # mid-render, a reload in flight; or a selector that no longer matches
            now, unreadable = f"({type(exc).__name__})", unreadable or time.monotonic()
            if time.monotonic() - unreadable > unreadable_for:
                raise
        if now != shown:
            print(f"[ui] {now}", flush=True)
            shown, since = now, time.monotonic()
        if done(now):
            return now
        if time.monotonic() > deadline:
            pytest.fail(f"the UI still showed {shown!r} after {timeout:.0f} s")
        if time.monotonic() - since > reload_after:
            page.reload()
            since = time.monotonic()
        time.sleep(poll)


def table(page) -> list[dict[str, str]]:
    """The page's first table as {column header: cell text} rows, read in one go."""
    return page.evaluate(
        """() => {
            const t = document.querySelector("table");
            if (!t) return [];
            const heads = [...t.querySelectorAll("thead th")].map(th => th.innerText.trim());
            return [...t.querySelectorAll("tbody tr")].map(tr =>
                Object.fromEntries([...tr.querySelectorAll("td")].map((td, i) => [heads[i] ?? String(i), td.innerText.trim()])));
        }"""
    )


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ---------------------------------------------------------------- tests
def test_trigger_taxi_training_from_the_ui(ui_stack, page, tmp_path):
    from playwright.sync_api import expect

    assert ui_stack.dag_runs(TRAINING) == [], "taxi_training ran before the UI triggered it"
    with screenshots_kept_on_failure(page, "test_trigger_taxi_training_from_the_ui", tmp_path / "shots") as shots:
        log_in(page, ui_stack)
        shots("logged-in")

        dialog = trigger_dialog(page, TRAINING)
        expect(dialog.get_by_role("radio", name="Single Run")).to_be_checked()
        shots("trigger-dialog")
        clicked = datetime.now(UTC)
        started = time.monotonic()
        dialog.get_by_role("button", name="Trigger").click()

        # The UI goes to the new run's page.
        page.wait_for_url(re.compile(rf"/dags/{TRAINING}/runs/[^/?#]+$"))
        run_id = unquote(page.url.rsplit("/runs/", 1)[1])
        expect(page.get_by_role("heading", name=run_id, exact=True)).to_be_visible()
        shots("run-page")
        run = ui_stack.api("GET", f"dags/{TRAINING}/dagRuns/{run_id}")
        assert (run["run_type"], run["triggered_by"], run["triggering_user_name"]) == ("manual", "ui", "admin"), run
        assert _ts(run["queued_at"]) >= clicked - timedelta(seconds=2), (run["queued_at"], clicked)
        assert [r["dag_run_id"] for r in ui_stack.dag_runs(TRAINING)] == [run_id]

        badge = run_state_badge(page, run_id)
        shown = watch(lambda: badge.inner_text(timeout=10_000).strip(), lambda s: s in ("Success", "Failed"), page, timeout=900)
        seconds = timed("taxi_training run triggered from the UI (click to finished)", started)
        shots(f"run-{shown.lower()}")
        # The REST API agrees (and, for a failed run, fails with the failed task's log).
        (done,) = ui_stack.wait_for_runs(TRAINING, 1, timeout=60, where=lambda r: r["dag_run_id"] == run_id)
        assert shown == "Success", f"the UI shows the run {shown} but the API says {done['state']}"
        tasks = ui_stack.task_instances(TRAINING, run_id)
        assert tasks and all(t["state"] == "success" for t in tasks), [(t["task_id"], t["state"]) for t in tasks]
        expect(page.get_by_text("Manual", exact=True)).to_be_visible()  # the run's Run Type, on its page
        shots("run-details")

    evaluation = ui_stack.api(
        "GET", f"dags/{TRAINING}/dagRuns/{run_id}/taskInstances/evaluate/xcomEntries/return_value", params={"deserialize": True}
    )
    value = evaluation["value"]
    assert value["champion"] and str(value["champion"]["version"]) == ui_stack.champion_version, value["champion"]
    print(f"[ui] taxi_training {run_id}: {seconds} s; decision {value['decision']}", flush=True)


def backfill_range(ui_stack) -> tuple[datetime, datetime]:
    """The newest BACKFILL_HOURS consecutive wall-clock hours, ending yesterday at the latest,
    whose data-time hours all hold offline rows of the hourly views (the sample is sparse: about
    ten such hours a day). Returns the first and last logical date (the UI's range is inclusive)."""
    offset = timedelta(days=float(ui_stack.env["TAXI_REPLAY_OFFSET_DAYS"]))
    if offset % timedelta(hours=1):
        pytest.fail(
            f"TAXI_REPLAY_OFFSET_DAYS={ui_stack.env['TAXI_REPLAY_OFFSET_DAYS']} is not a whole number of hours: no wall hour maps to a data hour"
        )
    features = Path(ui_stack.env["TAXI_FEATURES_DIR"])
    hours = set()
    for view in views_for_cadence("hourly"):
        stamps = pd.read_parquet(features / f"{view.name}.parquet", columns=[EVENT_TIMESTAMP])[EVENT_TIMESTAMP]
        hours |= {t.to_pydatetime() for t in stamps.dt.floor("h").drop_duplicates()}
    yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    last = yesterday.replace(hour=24 - BACKFILL_HOURS) - offset  # data time of the latest candidate start
    for back in range(24 * 30):
        start = last - timedelta(hours=back)
        if all(start + timedelta(hours=h) in hours for h in range(BACKFILL_HOURS)):
            return start + offset, start + offset + timedelta(hours=BACKFILL_HOURS - 1)
    pytest.fail(
        f"no {BACKFILL_HOURS} consecutive hours with offline rows of the hourly views in the 30 days of data before {last:%Y-%m-%d %H:%M} (data time)"
    )


def test_backfill_feast_materialize_hourly_from_the_ui(ui_stack, page, tmp_path):
    from playwright.sync_api import expect

    start, end = backfill_range(ui_stack)
    logical_dates = [start + timedelta(hours=h) for h in range(BACKFILL_HOURS)]
    assert ui_stack.backfills(HOURLY) == []
    # Unpaused now, its latest hourly interval runs at once (scheduled); the backfill's runs only start while unpaused.
    ui_stack.unpause(HOURLY)
    with screenshots_kept_on_failure(page, "test_backfill_feast_materialize_hourly_from_the_ui", tmp_path / "shots") as shots:
        log_in(page, ui_stack)
        shots("logged-in")

        dialog = trigger_dialog(page, HOURLY)
        choose(dialog, "Backfill")
        expect(dialog.get_by_role("button", name="Run Backfill")).to_be_disabled()  # no range yet
        pick_datetime(page, dialog, "From", start)
        pick_datetime(page, dialog, "To", end)
        expect(dialog.get_by_text(f"{BACKFILL_HOURS} runs will be triggered")).to_be_visible()
        shots("backfill-range")
        choose(dialog, "All Runs")  # reprocess behaviour: completed
        dialog.locator("input[name=max_active_runs]").fill(str(BACKFILL_HOURS))
        shots("backfill-dialog")
        started = time.monotonic()
        dialog.get_by_role("button", name="Run Backfill").click()
        expect(dialog).to_be_hidden()
        expect(page.get_by_text("Backfill in progress")).to_be_visible()
        shots("backfill-in-progress")

        # The DAG's Runs tab: the backfill's runs, until all succeeded.
        page.get_by_role("link", name="Runs", exact=True).click()
        page.wait_for_url(f"**/dags/{HOURLY}/runs**")

        def backfill_runs() -> str:
            rows = [r for r in table(page) if r.get("Run Type") == "Backfill"]
            return ", ".join(f"{r.get('Dag Run ID')}: {r.get('State')}" for r in rows) or "no backfill run yet"

        def all_finished(shown: str) -> bool:
            states = re.findall(r": (\w[\w ]*)", shown)
            return len(states) == BACKFILL_HOURS and all(s in ("Success", "Failed") for s in states)

        shown = watch(backfill_runs, all_finished, page, timeout=600)
        timed(f"backfill of {BACKFILL_HOURS} hourly runs from the UI (click to all finished)", started)
        shots("backfill-runs")
        # The REST API agrees (and, for a failed run, fails with the failed task's log).
        ui_stack.wait_for_runs(HOURLY, BACKFILL_HOURS, timeout=60, where=lambda r: r["run_type"] == "backfill")
        assert shown.count(": Success") == BACKFILL_HOURS, f"the UI shows the backfill's runs as {shown}"

        # The Backfills tab: the backfill completed (the scheduler marks it within about 30 s).
        page.get_by_role("link", name="Backfills", exact=True).click()
        page.wait_for_url(f"**/dags/{HOURLY}/backfills**")

        def backfills() -> str:
            rows = [r for r in table(page) if r.get("From")]  # (the Runs tab's table until the Backfills tab's renders)
            return "; ".join(f"{r['From']} .. {r.get('To')} completed at {r.get('Completed at') or '-'}" for r in rows) or "no backfill yet"

        shown = watch(backfills, lambda s: s.startswith(f"{start:%Y-%m-%d %H:%M}") and not s.endswith("-"), page, timeout=120, reload_after=10)
        expect(page.get_by_text("Backfill in progress")).to_be_hidden()
        timed("backfill complete in the UI", started)
        shots("backfill-complete")

    # The REST API: one backfill, as picked in the dialog, its runs on the range's logical dates, all successful.
    (backfill,) = ui_stack.backfills(HOURLY)
    assert (_ts(backfill["from_date"]), _ts(backfill["to_date"])) == (start, end), backfill
    assert (backfill["reprocess_behavior"], backfill["max_active_runs"], backfill["is_paused"]) == ("completed", BACKFILL_HOURS, False), backfill
    assert backfill["completed_at"] is not None, backfill
    runs = ui_stack.dag_runs(HOURLY, run_type="backfill")
    assert [_ts(r["logical_date"]) for r in runs] == logical_dates, [r["logical_date"] for r in runs]
    assert all(r["state"] == "success" and r["triggering_user_name"] == "admin" for r in runs), [(r["dag_run_id"], r["state"]) for r in runs]
    assert all(_ts(r["data_interval_end"]) - _ts(r["data_interval_start"]) == timedelta(hours=1) for r in runs)
    # Each run materialized its window's rows (its task's return value).
    rows = {}
    for run in runs:
        xcom = ui_stack.api(
            "GET",
            f"dags/{HOURLY}/dagRuns/{run['dag_run_id']}/taskInstances/materialize_window/xcomEntries/return_value",
            params={"deserialize": True},
        )
        rows[run["dag_run_id"]] = xcom["value"]["rows"]
    assert all(n > 0 for n in rows.values()), rows
    print(f"[ui] backfill {backfill['id']} of {HOURLY}, {start:%Y-%m-%d %H:%M} .. {end:%H:%M}: rows materialized {rows}", flush=True)

"""Failed and stuck jobs (admins): what failed with its last error, what is stuck, what the
sweeps gave up on; and a retry button for a failed job (refit/failed_jobs.py, audited)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from refit import failed_jobs
from refit.dashboard.render import page
from refit.dashboard.session import AdminDep
from refit.transactions import SessionDep

router = APIRouter()


@router.get("/jobs", response_class=HTMLResponse)
async def jobs_page(
    request: Request, session: SessionDep, operator: AdminDep, retried: int | None = None
) -> HTMLResponse:
    return page(
        request,
        "jobs.html",
        failed=await failed_jobs.failed(session),
        stuck=await failed_jobs.stuck(session),
        gave_up=await failed_jobs.gave_up(session),
        shown=failed_jobs.SHOWN,
        running_minutes=failed_jobs.STUCK_RUNNING_SECONDS // 60,
        due_minutes=failed_jobs.STUCK_DUE_SECONDS // 60,
        done=f"Job {retried} queued again, due now." if retried is not None else None,
    )


@router.post("/jobs/{job_id}/retry")
async def retry_job(job_id: int, session: SessionDep, operator: AdminDep) -> Response:
    await failed_jobs.retry(session, job_id, operator.actor)
    return RedirectResponse(f"/admin/jobs?retried={job_id}", status_code=303)

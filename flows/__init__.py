"""Prefect flows: orchestration only. Stages live in `merr_builder/` and import no Prefect."""

from merr_builder.env import apply_offline_defaults

apply_offline_defaults()

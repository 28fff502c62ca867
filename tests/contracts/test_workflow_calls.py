"""Every update and query declared by name (for callers that cannot import a workflow) names a
handler of its workflow, and every workflow name declared so is the workflow's."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.workflow import _Definition

from jobsheet.compute import book
from jobsheet.contracts.workflow_calls import Query, Update
from jobsheet.identity import calls as identity_calls
from jobsheet.ledger import calls
from jobsheet.ledger.models import CREDIT_NOTE_WORKFLOW
from workflows.account import AccountWorkflow
from workflows.compute_contract import ComputeContractWorkflow
from workflows.compute_service import ComputeServiceWorkflow
from workflows.credit_note import CreditNoteWorkflow
from workflows.user import UserWorkflow

DECLARED: list[tuple[type, str, list[Update[Any, Any] | Query[Any]]]] = [
    (
        AccountWorkflow,
        calls.ACCOUNT_WORKFLOW,
        [
            calls.DEPOSIT,
            calls.SET_OVERDRAFT_LIMIT,
            calls.CASH_CHEQUE,
            calls.CREDIT,
            calls.RECEIPT,
            calls.REFUND,
            calls.BALANCE,
            calls.STATEMENT,
            calls.NOTE_KEEPER,
        ],
    ),
    (CreditNoteWorkflow, CREDIT_NOTE_WORKFLOW, [calls.RECEIPT, calls.REFUND]),
    (
        UserWorkflow,
        identity_calls.USER_WORKFLOW,
        [
            identity_calls.KEYS,
            identity_calls.REGISTER_KEY,
            identity_calls.REVOKE_KEY,
            identity_calls.USE_NONCE,
        ],
    ),
    (
        ComputeServiceWorkflow,
        book.BOOK_WORKFLOW,
        [book.RESERVE, book.BOOK_RELEASE, book.BOOK_CONTRACT, book.BOOK_STARTED],
    ),
    (
        ComputeContractWorkflow,
        book.CONTRACT_WORKFLOW,
        [book.CONTRACT_RELEASE, book.CONTRACT_RECORD],
    ),
]


@pytest.mark.parametrize(
    ("workflow", "name", "handlers"), DECLARED, ids=[name for _, name, _ in DECLARED]
)
def test_declared_names_match_the_workflow(
    workflow: type, name: str, handlers: list[Update[Any, Any] | Query[Any]]
) -> None:
    definition = _Definition.must_from_class(workflow)
    assert definition.name == name
    for handler in handlers:
        kind = definition.updates if isinstance(handler, Update) else definition.queries
        assert handler.name in kind, f"{name} has no {type(handler).__name__} {handler.name}"

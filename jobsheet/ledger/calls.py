"""How the account workflow is called: its name, start input, updates and queries.

The account workflow (workflows/account.py) is named with these and started with this input;
the ledger operations (jobsheet/ledger/operations.py), which the ledger activities use too and so cannot
import a workflow, calls its handlers through these declarations (checked against the workflow
by tests/contracts/test_workflow_calls.py). The user registry's are in jobsheet/identity/calls.py.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from jobsheet.contracts.workflow_calls import Query, Update
from jobsheet.core.money import NonNegativeMoney
from jobsheet.core.names import Name
from jobsheet.identity.keys import PublicKeyRecord
from jobsheet.ledger.models import (
    BalanceView,
    CashChequeInput,
    CreditInput,
    CreditNote,
    DepositInput,
    NoteKeeper,
    OverdraftInput,
    ReceiptInput,
    ReceiptResult,
    RefundInput,
    RefundResult,
    Statement,
)
from jobsheet.ledger.state import ZERO, AccountState

ACCOUNT_WORKFLOW = "AccountWorkflow"


class OpenAccountInput(BaseModel):
    """Start input of an account workflow (``state`` and ``ledger_key`` are accepted only from
    the account's own continue-as-new)."""

    account: Name
    owner: Name
    overdraft_limit: NonNegativeMoney = ZERO
    """Ignored by new accounts: the operator sets a limit with a signed ``set_overdraft_limit``
    (kept so that runs started before the ``ledger-start-checks`` patch still decode)."""
    continue_as_new_after: int = Field(default=1000, ge=1)
    state: AccountState | None = None
    ledger_key: PublicKeyRecord | None = None
    """The ledger workers' public key once an earlier run fetched it (set by continue-as-new)."""


DEPOSIT: Update[DepositInput, BalanceView] = Update("deposit", BalanceView)
SET_OVERDRAFT_LIMIT: Update[OverdraftInput, BalanceView] = Update(
    "set_overdraft_limit", BalanceView
)
CASH_CHEQUE: Update[CashChequeInput, CreditNote] = Update("cash_cheque", CreditNote)
CREDIT: Update[CreditInput, BalanceView] = Update("credit", BalanceView)
RECEIPT: Update[ReceiptInput, ReceiptResult] = Update("receipt", ReceiptResult)
"""Also a credit note workflow's: its account answers it for a note placed before notes were
workflows."""
REFUND: Update[RefundInput, RefundResult] = Update("refund", RefundResult)
"""Also a credit note workflow's, as :data:`RECEIPT`."""
BALANCE: Query[BalanceView] = Query("balance", BalanceView)
STATEMENT: Query[Statement] = Query("statement", Statement)
NOTE_KEEPER: Query[NoteKeeper] = Query("note_keeper", NoteKeeper)

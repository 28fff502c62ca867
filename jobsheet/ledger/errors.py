"""The names of every business refusal the ledger and the identity registry give.

Each is raised as a non-retryable ``ApplicationError`` whose ``type`` is one of these names, so a
caller (or a user reading the CLI) can tell what went wrong without parsing a message.
"""

from __future__ import annotations

INSUFFICIENT_FUNDS = "InsufficientFunds"
CHEQUE_EXPIRED = "ChequeExpired"
CHEQUE_ALREADY_CASHED = "ChequeAlreadyCashed"
BAD_SIGNATURE = "BadSignature"
WRONG_RECIPIENT = "WrongRecipient"
WRONG_RESOURCE = "WrongResource"
OVER_MAX_SPEND = "OverMaxSpend"
UNKNOWN_ACCOUNT = "UnknownAccount"
NOT_ACCOUNT_OWNER = "NotAccountOwner"
WRONG_ACCOUNT = "WrongAccount"
UNKNOWN_CREDIT_NOTE = "UnknownCreditNote"
CREDIT_NOTE_CLOSED = "CreditNoteClosed"
OVER_HELD = "ReceiptOverHeld"
INVALID_AMOUNT = "InvalidAmount"
ACCOUNT_EXISTS = "AccountExists"
UNSIGNED = "Unsigned"
NOT_OPERATOR = "NotOperator"
STALE_SIGNATURE = "StaleSignature"
FORGED_STATE = "ForgedState"
PAYMENT_VOIDED = "PaymentVoided"

UNKNOWN_USER = "UnknownUser"
USER_EXISTS = "UserExists"
UNKNOWN_KEY = "UnknownKey"
KEY_EXISTS = "KeyExists"
INVALID_KEY = "InvalidKey"
WRONG_USER = "WrongUser"
AUTHORISATION_EXPIRED = "AuthorisationExpired"
AUTHORISATION_NOT_YET_VALID = "AuthorisationNotYetValid"
AUTHORISATION_REUSED = "AuthorisationReused"

ALL = frozenset(
    {
        INSUFFICIENT_FUNDS,
        CHEQUE_EXPIRED,
        CHEQUE_ALREADY_CASHED,
        BAD_SIGNATURE,
        WRONG_RECIPIENT,
        WRONG_RESOURCE,
        OVER_MAX_SPEND,
        UNKNOWN_ACCOUNT,
        NOT_ACCOUNT_OWNER,
        WRONG_ACCOUNT,
        UNKNOWN_CREDIT_NOTE,
        CREDIT_NOTE_CLOSED,
        OVER_HELD,
        INVALID_AMOUNT,
        ACCOUNT_EXISTS,
        UNSIGNED,
        NOT_OPERATOR,
        STALE_SIGNATURE,
        FORGED_STATE,
        PAYMENT_VOIDED,
        UNKNOWN_USER,
        USER_EXISTS,
        UNKNOWN_KEY,
        KEY_EXISTS,
        INVALID_KEY,
        WRONG_USER,
        AUTHORISATION_EXPIRED,
        AUTHORISATION_NOT_YET_VALID,
        AUTHORISATION_REUSED,
    }
)

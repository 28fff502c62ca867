"""The ledger: accounts as entity workflows, two-phase payments by cheque and an audit trail."""

"""Identities: users' key pairs, signed requests and authorisations, the keys workers trust."""

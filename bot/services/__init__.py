"""The use cases: submit, decide, grant, revoke, expire, remind, review. One transaction each; side effects after."""

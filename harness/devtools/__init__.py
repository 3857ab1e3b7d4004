"""The developers' tools, not part of the product: the grader's self-test against the catalogue
and the stress command. Nothing in the product imports them."""

"""The shop's pluggable providers: the factories its Candidates name (`shop.adapters.*`)."""

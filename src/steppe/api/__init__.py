"""HTTP interfaces: Nomad-compatible (``api.nomad``, port 4646) and Consul-compatible
(``api.consul``, port 8500). Shared request plumbing lives in ``_http``."""

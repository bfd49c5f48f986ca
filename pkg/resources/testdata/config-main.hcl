# Rendered by the OpenBao operator for secrets/vault-a. Do not edit: changes are overwritten.
# api_addr, cluster_addr and the Raft node_id come from BAO_API_ADDR, BAO_CLUSTER_ADDR
# and BAO_RAFT_NODE_ID, set per pod.
cluster_name = "vault-a"
ui = false

listener "tcp" {
  address = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"
  tls_cert_file = "/openbao/tls/tls.crt"
  tls_key_file = "/openbao/tls/tls.key"
  tls_min_version = "tls12"
}

storage "raft" {
  path = "/openbao/data"
  performance_multiplier = 1
  retry_join {
    leader_api_addr = "https://vault-a-0.vault-a-internal.secrets.svc:8200"
    leader_ca_cert_file = "/openbao/tls/ca.crt"
    leader_tls_servername = "vault-a-0.vault-a-internal.secrets.svc"
  }
  retry_join {
    leader_api_addr = "https://vault-a-1.vault-a-internal.secrets.svc:8200"
    leader_ca_cert_file = "/openbao/tls/ca.crt"
    leader_tls_servername = "vault-a-1.vault-a-internal.secrets.svc"
  }
  retry_join {
    leader_api_addr = "https://vault-a-2.vault-a-internal.secrets.svc:8200"
    leader_ca_cert_file = "/openbao/tls/ca.crt"
    leader_tls_servername = "vault-a-2.vault-a-internal.secrets.svc"
  }
}

seal "static" {
  current_key_id = "operator-1"
  current_key = "file:///openbao/seal/key"
}

telemetry {
  prometheus_retention_time = "24h"
  disable_hostname = true
}

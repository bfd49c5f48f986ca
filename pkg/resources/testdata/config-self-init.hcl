# Self-initialization of secrets/vault-a, rendered by the OpenBao operator. OpenBao runs it once,
# when the first server starts on empty storage; no root token leaves the server.
initialize "operator_jwt_auth" {
  request "enable_jwt" {
    operation = "update"
    path = "sys/auth/jwt"
    data = {
      description = "Kubernetes service accounts of the OpenBao operator and its upgrade jobs"
      type = "jwt"
    }
  }
  request "configure_jwt" {
    operation = "update"
    path = "auth/jwt/config"
    data = {
      bound_issuer = "https://kubernetes.default.svc.cluster.local"
      jwt_validation_pubkeys = [
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n-----END PUBLIC KEY-----\n",
      ]
    }
  }
}

initialize "operator_upgrade_role" {
  request "upgrade_policy" {
    operation = "update"
    path = "sys/policies/acl/openbao-upgrade"
    data = {
      policy = <<EOT
# Move leadership away from a server before it is replaced.
path "sys/step-down" {
  capabilities = ["update", "sudo"]
}

# Save a snapshot before the first server is touched.
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}

# Check that the other servers are healthy voters before stepping down.
path "sys/storage/raft/configuration" {
  capabilities = ["read"]
}
path "sys/storage/raft/autopilot/state" {
  capabilities = ["read"]
}
EOT
    }
  }
  request "upgrade_role" {
    operation = "update"
    path = "auth/jwt/role/openbao-upgrade"
    data = {
      bound_audiences = ["openbao-upgrade"]
      bound_claims = {
        sub = [
          "system:serviceaccount:secrets:vault-a-upgrade-serviceaccount",
          "system:serviceaccount:secrets:*-upgrade-serviceaccount",
        ]
      }
      bound_claims_type = "glob"
      role_type = "jwt"
      token_max_ttl = "10m"
      token_policies = ["openbao-upgrade"]
      token_ttl = "10m"
      user_claim = "sub"
    }
  }
}

initialize "operator_backup_role" {
  request "backup_policy" {
    operation = "update"
    path = "sys/policies/acl/openbao-backup"
    data = {
      policy = <<EOT
# Read a Raft snapshot; nothing else.
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}
EOT
    }
  }
  request "backup_role" {
    operation = "update"
    path = "auth/jwt/role/openbao-backup"
    data = {
      bound_audiences = ["openbao-backup"]
      bound_claims = {
        sub = [
          "system:serviceaccount:secrets:vault-a-upgrade-serviceaccount",
          "system:serviceaccount:secrets:*-upgrade-serviceaccount",
        ]
      }
      bound_claims_type = "glob"
      role_type = "jwt"
      token_max_ttl = "10m"
      token_policies = ["openbao-backup"]
      token_ttl = "10m"
      user_claim = "sub"
    }
  }
}

initialize "operator_restore_role" {
  request "restore_policy" {
    operation = "update"
    path = "sys/policies/acl/openbao-restore"
    data = {
      policy = <<EOT
# Install a Raft snapshot; nothing else.
path "sys/storage/raft/snapshot" {
  capabilities = ["update"]
}
path "sys/storage/raft/snapshot-force" {
  capabilities = ["update"]
}
EOT
    }
  }
  request "restore_role" {
    operation = "update"
    path = "auth/jwt/role/openbao-restore"
    data = {
      bound_audiences = ["openbao-restore"]
      bound_claims = {
        sub = [
          "system:serviceaccount:secrets:vault-a-upgrade-serviceaccount",
          "system:serviceaccount:secrets:*-upgrade-serviceaccount",
        ]
      }
      bound_claims_type = "glob"
      role_type = "jwt"
      token_max_ttl = "10m"
      token_policies = ["openbao-restore"]
      token_ttl = "10m"
      user_claim = "sub"
    }
  }
}

initialize "operator_role" {
  request "operator_policy" {
    operation = "update"
    path = "sys/policies/acl/openbao-operator"
    data = {
      policy = <<EOT
# Observe membership, health and versions.
path "sys/storage/raft/configuration" {
  capabilities = ["read"]
}
path "sys/storage/raft/autopilot/state" {
  capabilities = ["read"]
}
path "sys/version-history" {
  capabilities = ["list", "read"]
}

# Blue/green: promote the new servers, then remove the old ones.
path "sys/storage/raft/promote" {
  capabilities = ["update"]
}
path "sys/storage/raft/remove-peer" {
  capabilities = ["update"]
}
EOT
    }
  }
  request "operator_jwt_keys_policy" {
    operation = "update"
    path = "sys/policies/acl/openbao-operator-jwt-keys"
    data = {
      policy = <<EOT
# Follow a rotation of the Kubernetes service-account signing keys: replace the trusted
# keys, never the issuer, nothing else of the JWT auth method.
path "auth/jwt/config" {
  capabilities = ["update"]
  required_parameters = ["bound_issuer", "jwt_validation_pubkeys"]
  allowed_parameters {
    bound_issuer = ["https://kubernetes.default.svc.cluster.local"]
    jwt_validation_pubkeys = []
  }
}
EOT
    }
  }
  request "operator_role" {
    operation = "update"
    path = "auth/jwt/role/openbao-operator"
    data = {
      bound_audiences = ["openbao-operator"]
      bound_subject = "system:serviceaccount:openbao-operator-system:openbao-operator-controller-manager"
      role_type = "jwt"
      token_max_ttl = "24h"
      token_policies = ["openbao-operator", "openbao-operator-jwt-keys"]
      token_ttl = "1h"
      user_claim = "sub"
    }
  }
}

initialize "user" {
  request "enable-kv" {
    operation = "update"
    path = "sys/mounts/secret"
    data = {
      options = {
        version = "2"
      }
      type = "kv"
    }
  }
  request "admin-policy" {
    operation = "update"
    path = "sys/policies/acl/admin"
    data = {
      policy = <<EOT
path "*" {
  capabilities = ["sudo", "read"]
}
EOT
    }
  }
}

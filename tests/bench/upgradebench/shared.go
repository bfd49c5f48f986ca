package upgradebench

// FindOperatorPid finds the process of the operator's manager binary among the descendants
// of this process (the local cluster's node agent runs inside it); 0 when there is none.
func FindOperatorPid(binary string) int { return findOperatorPid(binary) }

// PodNetns finds the network namespace of the local cluster's pod with address ip.
func PodNetns(bridge, ip string) (string, error) { return podNetns(bridge, ip) }

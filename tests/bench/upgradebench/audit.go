package upgradebench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"time"
)

// AuditPolicy records, at Metadata level, only the requests of user, once each (when the
// response is complete); everything else is left out so the log stays small.
func AuditPolicy(user string) string {
	return fmt.Sprintf(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
- level: Metadata
  users: [%q]
- level: None
`, user)
}

// AuditFlags are the kube-apiserver flags that write the audit log to logPath.
func AuditFlags(policyPath, logPath string) []string {
	return []string{
		"--audit-policy-file=" + policyPath,
		"--audit-log-path=" + logPath,
		"--audit-log-format=json",
		"--audit-log-mode=blocking",
		"--audit-log-maxsize=0",
	}
}

// auditEvent holds the fields of an audit.k8s.io/v1 Event the bench reads.
type auditEvent struct {
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	StageTimestamp time.Time `json:"stageTimestamp"`
}

// APIRequests counts one client's requests within a time window.
type APIRequests struct {
	Total  int            `json:"total"`
	ByVerb map[string]int `json:"byVerb"`
	// Writes are create, update, patch, delete and deletecollection requests on objects of
	// the benchmarked cluster's namespace.
	Writes int `json:"writes"`
	// WritesByResource breaks Writes down, e.g. "patch openbaoclusters/status".
	WritesByResource map[string]int `json:"writesByResource,omitempty"`
	// LeaseWrites are the operator's leader-election renewals (its own namespace), counted
	// apart: they keep one replica of the operator in charge and say nothing about the
	// cluster.
	LeaseWrites int `json:"leaseWrites"`
	// OtherWrites are writes anywhere else (another cluster's namespace, cluster-scoped
	// reviews of the metrics endpoint's callers).
	OtherWrites           int            `json:"otherWrites"`
	OtherWritesByResource map[string]int `json:"otherWritesByResource,omitempty"`
}

func isWrite(verb string) bool {
	switch verb {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}

// CountAuditLog counts the requests of user in the audit log at path whose response
// completed in [from, to). Writes are attributed to namespace.
func CountAuditLog(path, user, namespace, operatorNamespace string, from, to time.Time) (APIRequests, error) {
	f, err := os.Open(path)
	if err != nil {
		return APIRequests{}, err
	}
	defer f.Close() //nolint:errcheck
	return countAudit(f, user, namespace, operatorNamespace, from, to)
}

func countAudit(r io.Reader, user, namespace, operatorNamespace string, from, to time.Time) (APIRequests, error) {
	out := APIRequests{ByVerb: map[string]int{}, WritesByResource: map[string]int{}, OtherWritesByResource: map[string]int{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return out, fmt.Errorf("audit log: %w", err)
		}
		if e.Stage != "ResponseComplete" || e.User.Username != user ||
			e.StageTimestamp.Before(from) || !e.StageTimestamp.Before(to) {
			continue
		}
		out.Total++
		out.ByVerb[e.Verb]++
		if !isWrite(e.Verb) {
			continue
		}
		res := ""
		if e.ObjectRef != nil {
			res = e.ObjectRef.Resource
			if e.ObjectRef.Subresource != "" {
				res += "/" + e.ObjectRef.Subresource
			}
		}
		switch {
		case e.ObjectRef != nil && e.ObjectRef.Namespace == namespace:
			out.Writes++
			out.WritesByResource[e.Verb+" "+res]++
		case e.ObjectRef != nil && e.ObjectRef.Namespace == operatorNamespace && e.ObjectRef.Resource == "leases":
			out.LeaseWrites++
		default:
			out.OtherWrites++
			out.OtherWritesByResource[e.Verb+" "+res]++
		}
	}
	return out, sc.Err()
}

// String is a short form for the table: "123 (get 40, list 2, patch 12)".
func (a APIRequests) String() string {
	verbs := make([]string, 0, len(a.ByVerb))
	for v := range a.ByVerb {
		verbs = append(verbs, v)
	}
	sort.Strings(verbs)
	s := fmt.Sprintf("%d", a.Total)
	sep := " ("
	for _, v := range verbs {
		s += fmt.Sprintf("%s%s %d", sep, v, a.ByVerb[v])
		sep = ", "
	}
	if len(verbs) > 0 {
		s += ")"
	}
	return s
}

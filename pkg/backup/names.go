package backup

import (
	"path"
	"strings"
	"time"
)

// Snapshot names carry the backup's time, so that retention can order them without reading
// object metadata: <cluster>-20261130T060000Z.snap.
const (
	timeLayout = "20060102T150405Z"
	// Suffix of every snapshot written by a backup.
	Suffix = ".snap"
	// ChecksumSuffix is appended to a snapshot file's name for the file holding its SHA-256
	// on the snapshot volume.
	ChecksumSuffix = ".sha256"
	// VolumeDir is the directory of the backups inside the snapshot volume.
	VolumeDir = "backups"
)

// SnapshotName is the name of the backup of cluster taken for time t.
func SnapshotName(cluster string, t time.Time) string {
	return cluster + "-" + t.UTC().Format(timeLayout) + Suffix
}

// ParseSnapshotName returns the time of a backup of cluster from the base name of its
// snapshot; ok is false for anything else (other clusters' snapshots, foreign files,
// partial uploads).
func ParseSnapshotName(cluster, name string) (time.Time, bool) {
	base := path.Base(name)
	rest, found := strings.CutPrefix(base, cluster+"-")
	if !found {
		return time.Time{}, false
	}
	stamp, found := strings.CutSuffix(rest, Suffix)
	if !found {
		return time.Time{}, false
	}
	t, err := time.Parse(timeLayout, stamp)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// ObjectPrefix is where a cluster's backups live in a bucket: <prefix><namespace>/<cluster>/.
// A restore lists this prefix to find the cluster's backups.
func ObjectPrefix(prefix, namespace, cluster string) string {
	return prefix + namespace + "/" + cluster + "/"
}

// PreUpgradeInfix marks the snapshot an upgrade takes before it changes a server:
// <cluster>-pre-upgrade-<from version>-<revision>.snap. ParseSnapshotName does not accept
// it, so that retention never lists, and never deletes, a pre-upgrade snapshot.
const PreUpgradeInfix = "-pre-upgrade-"

// PreUpgradeName is the name of the snapshot taken before the upgrade revision of cluster
// from fromVersion; characters other than letters, digits, '.', '_' and '-' become '-'.
func PreUpgradeName(cluster, fromVersion, revision string) string {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
				return r
			}
			return '-'
		}, s)
	}
	return cluster + PreUpgradeInfix + clean(fromVersion) + "-" + clean(revision) + Suffix
}

// IsPreUpgradeName says whether name is a pre-upgrade snapshot name of cluster (see
// PreUpgradeName).
func IsPreUpgradeName(cluster, name string) bool {
	rest, found := strings.CutPrefix(name, cluster+PreUpgradeInfix)
	if !found || strings.ContainsAny(rest, "/\\") {
		return false
	}
	stem, found := strings.CutSuffix(rest, Suffix)
	return found && stem != "" && strings.Trim(stem, ".") != ""
}

package v1alpha1

// ConvertDeprecatedFields moves what a previous release of the operator wrote into the
// flat, now deprecated fields of an upgrade in flight to the sub-struct of the strategy that
// owns them, so that an upgrade started by that release finishes under this one. It is the
// only reader of the deprecated fields; they are cleared, so the next status write removes
// them. It reports whether it changed anything.
func (u *UpgradeStatus) ConvertDeprecatedFields() bool {
	if u == nil || (u.Partition == nil && u.CatchUpIndex == 0 && len(u.PodsDone) == 0) {
		return false
	}
	if u.Rolling == nil {
		// The previous release recorded these fields for the upgrade's current revision.
		u.Rolling = &RollingStatus{
			Revision:     u.Revision,
			Partition:    u.Partition,
			CatchUpIndex: u.CatchUpIndex,
			PodsDone:     u.PodsDone,
		}
	}
	u.Partition, u.CatchUpIndex, u.PodsDone = nil, 0, nil
	return true
}

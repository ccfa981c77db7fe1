package sqllog

// SetAfterWrite installs f between each batch's commit and its acknowledgement; f
// returning false leaves the batch unacknowledged, as a crash at that point would.
func SetAfterWrite(p *Projector, f func() bool) { p.afterWrite = f }

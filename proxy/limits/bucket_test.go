package limits

import "testing"

// A bucket of r per minute admits a burst of exactly r, then one unit every minute/r.
func TestBucketBurstIsTheLimit(t *testing.T) {
	for _, limit := range []int64{1, 3, 60} {
		var b bucket
		now := int64(1_000_000_000_000)
		b.setRate(perUnit(limit, 1), now)
		admitted := int64(0)
		// The burst arrives over a few milliseconds: a fraction of a unit refilled
		// meanwhile admits nothing.
		for i := range limit * 3 {
			if b.take(now+i*1000) == 0 {
				admitted++
			}
		}
		now += limit * 3 * 1000
		if admitted != limit {
			t.Fatalf("limit %d: a burst admitted %d", limit, admitted)
		}
		wait := b.wait(now)
		if spacing := window / limit; wait < spacing-limit*3*1000 || wait > spacing {
			t.Fatalf("limit %d: wait %d ns after the burst, want the spacing %d", limit, wait, spacing)
		}
		if b.take(now+wait-1) == 0 {
			t.Fatalf("limit %d: admitted 1 ns before the next unit", limit)
		}
		if b.take(now+wait) != 0 {
			t.Fatalf("limit %d: refused when the next unit was due", limit)
		}
		if b.take(now+wait) == 0 {
			t.Fatalf("limit %d: admitted two units for one interval", limit)
		}
	}
}

package pipeline

import (
	"slices"
	"sync"

	"github.com/storeflow/storeflow/recommender"
	"github.com/storeflow/storeflow/store"
)

const visitShards = 64

// visits remembers which coupons each shopper was offered during the current
// visit, so that no coupon goes to the same shopper twice in one visit even
// when two focus events are scored in parallel. Entry and exit clear a
// shopper's visit; a visit with no offer for SHOPPER_TTL is forgotten.
type visits struct {
	shards [visitShards]struct {
		mu sync.Mutex
		m  map[string]*visit
	}
}

type visit struct {
	issued []int // coupon ids offered this visit
	seen   int64 // wall clock (unix seconds) of the last offer
}

func newVisits() *visits {
	v := &visits{}
	for i := range v.shards {
		v.shards[i].m = make(map[string]*visit)
	}
	return v
}

// claim picks the best coupon (recommender.Best) not yet offered to id this
// visit and records it, atomically. ok is false when nothing qualifies;
// already is true when something would have qualified but was offered before.
func (v *visits) claim(id string, now int64, coupons []store.Coupon, probs []float64, threshold float64) (c store.Coupon, ok, already bool) {
	sh := &v.shards[hashID(id)%visitShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	vi := sh.m[id]
	var skip func(int) bool
	if vi != nil {
		skip = func(couponID int) bool { return slices.Contains(vi.issued, couponID) }
	}
	i, ok := recommender.Best(coupons, probs, threshold, skip)
	if !ok {
		if vi != nil {
			_, qualified := recommender.Best(coupons, probs, threshold, nil)
			return store.Coupon{}, false, qualified
		}
		return store.Coupon{}, false, false
	}
	if vi == nil {
		vi = &visit{}
		sh.m[id] = vi
	}
	vi.issued = append(vi.issued, coupons[i].ID)
	vi.seen = now
	return coupons[i], true, false
}

// release forgets an offer that could not be delivered, so a later focus may
// offer it again.
func (v *visits) release(id string, couponID int) {
	sh := &v.shards[hashID(id)%visitShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if vi := sh.m[id]; vi != nil {
		if i := slices.Index(vi.issued, couponID); i >= 0 {
			vi.issued = slices.Delete(vi.issued, i, i+1)
		}
	}
}

// forget ends id's visit.
func (v *visits) forget(id string) {
	sh := &v.shards[hashID(id)%visitShards]
	sh.mu.Lock()
	delete(sh.m, id)
	sh.mu.Unlock()
}

// expire forgets visits with no offer since before cutoff and returns how many.
func (v *visits) expire(cutoff int64) int {
	n := 0
	for i := range v.shards {
		sh := &v.shards[i]
		sh.mu.Lock()
		for id, vi := range sh.m {
			if vi.seen < cutoff {
				delete(sh.m, id)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// hashID is FNV-1a over the id: cheap, allocation-free, and stable, so one
// shopper always lands on the same worker and shard.
func hashID(id string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return h
}

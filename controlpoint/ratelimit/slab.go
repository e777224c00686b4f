package ratelimit

// slab holds the buckets of one shard of a Limiter, at most max of them,
// with least recently used eviction. Its table holds no pointers (keys are
// kept as 64-bit hashes, the recency list as slot numbers), so the
// garbage collector never scans it however many buckets it holds, and a
// flood of new keys, once the slab is full, allocates nothing: each new
// bucket takes the slot of the one it evicts.
//
// It is not safe for concurrent use: the mutex of its shard guards it.
type slab struct {
	index map[uint64]uint32 // key hash → slot
	slots []slot            // slots[0] is the sentinel of the recency list; slots[0].next is the most recently used
	free  uint32            // first free slot, chained through next; 0 for none
	n     int               // buckets held
	max   int               // most buckets held
}

type slot struct {
	bucket
	hash       uint64
	prev, next uint32
}

func newSlab(most int) slab {
	return slab{index: make(map[uint64]uint32), slots: make([]slot, 1, 64), max: max(most, 1)}
}

// get returns the bucket of hash h, or nil, and marks it the most
// recently used.
func (s *slab) get(h uint64) *bucket {
	i, ok := s.index[h]
	if !ok {
		return nil
	}
	if s.slots[0].next != i {
		s.unlink(i)
		s.pushFront(i)
	}
	return &s.slots[i].bucket
}

// peek returns the bucket of hash h, or nil, leaving the order alone.
func (s *slab) peek(h uint64) *bucket {
	i, ok := s.index[h]
	if !ok {
		return nil
	}
	return &s.slots[i].bucket
}

// add stores b under h (which must be absent) as the most recently used
// bucket, evicting the least recently used one when the slab is full. It
// returns the stored bucket, valid until the next add, and whether it
// evicted one.
func (s *slab) add(h uint64, b bucket) (*bucket, bool) {
	var i uint32
	evicted := false
	switch {
	case s.n >= s.max:
		i = s.slots[0].prev
		s.unlink(i)
		delete(s.index, s.slots[i].hash)
		s.n--
		evicted = true
	case s.free != 0:
		i = s.free
		s.free = s.slots[i].next
	default:
		s.slots = append(s.slots, slot{})
		i = uint32(len(s.slots) - 1)
	}
	s.slots[i] = slot{bucket: b, hash: h}
	s.index[h] = i
	s.pushFront(i)
	s.n++
	return &s.slots[i].bucket, evicted
}

// remove drops the bucket in slot i.
func (s *slab) remove(i uint32) {
	s.unlink(i)
	delete(s.index, s.slots[i].hash)
	s.slots[i] = slot{next: s.free}
	s.free = i
	s.n--
}

func (s *slab) unlink(i uint32) {
	p, nx := s.slots[i].prev, s.slots[i].next
	s.slots[p].next = nx
	s.slots[nx].prev = p
}

func (s *slab) pushFront(i uint32) {
	first := s.slots[0].next
	s.slots[i].prev, s.slots[i].next = 0, first
	s.slots[first].prev = i
	s.slots[0].next = i
}

// each calls f with every slot holding a bucket, from the least recently
// used; f may remove the slot it is given.
func (s *slab) each(f func(i uint32)) {
	for i := s.slots[0].prev; i != 0; {
		prev := s.slots[i].prev
		f(i)
		i = prev
	}
}

// compact gives memory back after a sweep dropped most buckets: when
// fewer than a quarter of the slots hold one, the table is rebuilt at its
// size (Go maps never shrink).
func (s *slab) compact() {
	if len(s.slots) < 1024 || s.n >= len(s.slots)/4 {
		return
	}
	slots := make([]slot, 1, s.n+1)
	index := make(map[uint64]uint32, s.n)
	for i := s.slots[0].prev; i != 0; i = s.slots[i].prev { // oldest first: each goes to the front
		j := uint32(len(slots))
		slots = append(slots, slot{bucket: s.slots[i].bucket, hash: s.slots[i].hash})
		index[s.slots[i].hash] = j
		first := slots[0].next
		slots[j].prev, slots[j].next = 0, first
		slots[first].prev = j
		slots[0].next = j
	}
	s.slots, s.index, s.free = slots, index, 0
}

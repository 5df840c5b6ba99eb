package simulator

import (
	"fmt"

	"github.com/storeflow/storeflow/store"
)

// maxLatticeNodes bounds the sensor lattice. The plans storeflow ships have a few
// hundred positions; the bound keeps a mistyped plan from eating the memory and
// keeps a route search (one per leg of a visit) well under a millisecond.
const maxLatticeNodes = 1 << 16

// none marks a missing neighbour or an unreachable node.
const none = -1

// lattice is the plan's sensor positions, computed once: the department of each
// position, its 4-neighbours, and how far each department position is from a
// door. A node is an index row*cols+col.
type lattice struct {
	cols, rows int
	x0, y0     int // coordinates of node 0
	step       int

	dept []store.Department
	nbr  [][4]int32 // left, right, up, down; none where off the plan

	// doorDist is, for a department position, the number of steps inside its
	// department to the nearest door (a department position next to the aisles
	// that join the entrance); none for aisles and for positions shut in.
	doorDist []int32

	entrance, exit int32
	usable         []store.Department // departments a shopper can reach, in value order

	// route scratch, reused by every search.
	mark  []uint32
	gen   uint32
	prev  []int32
	queue []int32
}

// newLattice lays the sensor lattice over the plan and checks that shoppers can
// walk it: entrance and exit in the aisles and joined, at least one department
// reachable.
func newLattice(p *store.Plan) (*lattice, error) {
	if p == nil {
		return nil, fmt.Errorf("simulator: no store plan")
	}
	switch {
	case p.Step < 1:
		return nil, fmt.Errorf("simulator: plan %q: sensor step %d must be >= 1", p.Name, p.Step)
	case p.Width < 1 || p.Height < 1:
		return nil, fmt.Errorf("simulator: plan %q: size %d×%d is empty", p.Name, p.Width, p.Height)
	case !p.Contains(p.Entrance.X, p.Entrance.Y):
		return nil, fmt.Errorf("simulator: plan %q: entrance %v is off the plan", p.Name, p.Entrance)
	case !p.Contains(p.Exit.X, p.Exit.Y):
		return nil, fmt.Errorf("simulator: plan %q: exit %v is off the plan", p.Name, p.Exit)
	case (p.Exit.X-p.Entrance.X)%p.Step != 0 || (p.Exit.Y-p.Entrance.Y)%p.Step != 0:
		return nil, fmt.Errorf("simulator: plan %q: exit %v is not on the sensor lattice (step %d from entrance %v)",
			p.Name, p.Exit, p.Step, p.Entrance)
	}
	// The lattice is anchored at the entrance: x = Entrance.X + i*Step.
	iMin, iMax := -(p.Entrance.X / p.Step), (p.Width-1-p.Entrance.X)/p.Step
	jMin, jMax := -(p.Entrance.Y / p.Step), (p.Height-1-p.Entrance.Y)/p.Step
	cols, rows := iMax-iMin+1, jMax-jMin+1
	if cols > maxLatticeNodes || rows > maxLatticeNodes/cols {
		return nil, fmt.Errorf("simulator: plan %q: %d×%d sensor positions, more than the %d the simulator walks",
			p.Name, cols, rows, maxLatticeNodes)
	}
	n := cols * rows
	l := &lattice{
		cols: cols, rows: rows,
		x0: p.Entrance.X + iMin*p.Step, y0: p.Entrance.Y + jMin*p.Step,
		step:     p.Step,
		dept:     make([]store.Department, n),
		nbr:      make([][4]int32, n),
		doorDist: make([]int32, n),
		mark:     make([]uint32, n),
		prev:     make([]int32, n),
		queue:    make([]int32, 0, n),
	}
	for r := range rows {
		for c := range cols {
			i := r*cols + c
			x, y := l.x0+c*l.step, l.y0+r*l.step
			l.dept[i] = p.DepartmentAt(x, y)
			nb := [4]int32{none, none, none, none}
			if c > 0 {
				nb[0] = int32(i - 1)
			}
			if c < cols-1 {
				nb[1] = int32(i + 1)
			}
			if r > 0 {
				nb[2] = int32(i - cols)
			}
			if r < rows-1 {
				nb[3] = int32(i + cols)
			}
			l.nbr[i] = nb
		}
	}
	l.entrance = l.node(p.Entrance.X, p.Entrance.Y)
	l.exit = l.node(p.Exit.X, p.Exit.Y)
	if d := l.dept[l.entrance]; d != store.NoDepartment {
		return nil, fmt.Errorf("simulator: plan %q: entrance %v lies in department %v", p.Name, p.Entrance, d)
	}
	if d := l.dept[l.exit]; d != store.NoDepartment {
		return nil, fmt.Errorf("simulator: plan %q: exit %v lies in department %v", p.Name, p.Exit, d)
	}

	// The aisles that join the entrance.
	hall := make([]bool, n)
	hall[l.entrance] = true
	q := append(l.queue[:0], l.entrance)
	for k := 0; k < len(q); k++ {
		for _, m := range l.nbr[q[k]] {
			if m != none && !hall[m] && l.dept[m] == store.NoDepartment {
				hall[m] = true
				q = append(q, m)
			}
		}
	}
	if !hall[l.exit] {
		return nil, fmt.Errorf("simulator: plan %q: no aisle leads from the entrance %v to the exit %v", p.Name, p.Entrance, p.Exit)
	}

	// Doors, then the distance of every department position to its nearest door
	// without leaving the department.
	q = q[:0]
	for i := range l.doorDist {
		l.doorDist[i] = none
		if l.dept[i] == store.NoDepartment {
			continue
		}
		for _, m := range l.nbr[i] {
			if m != none && hall[m] {
				l.doorDist[i] = 0
				q = append(q, int32(i))
				break
			}
		}
	}
	var reachable [256]bool
	for k := 0; k < len(q); k++ {
		u := q[k]
		reachable[l.dept[u]] = true
		for _, m := range l.nbr[u] {
			if m != none && l.doorDist[m] == none && l.dept[m] == l.dept[u] {
				l.doorDist[m] = l.doorDist[u] + 1
				q = append(q, m)
			}
		}
	}
	l.queue = q[:0]
	for d := 1; d < len(reachable); d++ {
		if reachable[d] {
			l.usable = append(l.usable, store.Department(d))
		}
	}
	if len(l.usable) == 0 {
		return nil, fmt.Errorf("simulator: plan %q: no department can be reached from the entrance", p.Name)
	}
	return l, nil
}

// node returns the lattice index of lattice coordinates (x, y).
func (l *lattice) node(x, y int) int32 {
	return int32((y-l.y0)/l.step*l.cols + (x-l.x0)/l.step)
}

// xy returns the plan coordinates of a node.
func (l *lattice) xy(n int32) (x, y int) {
	return l.x0 + int(n)%l.cols*l.step, l.y0 + int(n)/l.cols*l.step
}

// route appends to dst a shortest walk from `from` (exclusive) to the exit, or
// to the first reachable position of department to when toExit is false (the
// first door of it when atDoor is set, so that a shopper passing through can
// leave again at once). The
// walk keeps to the aisles and the target department; it may also cross the
// department it starts in when leaveThrough is set, but never re-enters it once
// out. rot rotates the order neighbours are tried in, so that shoppers do not
// all take the same one of several equally short walks. It reports false when
// there is no such walk.
func (l *lattice) route(dst []int32, from int32, to store.Department, toExit, atDoor, leaveThrough bool, rot int) ([]int32, bool) {
	if toExit && from == l.exit {
		return dst, true
	}
	l.gen++
	if l.gen == 0 { // wrapped: forget every old mark
		clear(l.mark)
		l.gen = 1
	}
	src := l.dept[from]
	l.mark[from] = l.gen
	q := append(l.queue[:0], from)
	defer func() { l.queue = q[:0] }()
	for k := 0; k < len(q); k++ {
		u := q[k]
		inSrc := src != store.NoDepartment && l.dept[u] == src
		for j := range 4 {
			m := l.nbr[u][(j+rot)&3]
			if m == none || l.mark[m] == l.gen {
				continue
			}
			dm := l.dept[m]
			switch {
			case toExit && m == l.exit, !toExit && dm == to && (l.doorDist[m] == 0 || !atDoor && l.doorDist[m] != none):
				l.prev[m] = u
				return l.walkBack(dst, from, m), true
			case dm == store.NoDepartment:
			case dm == src && inSrc && leaveThrough:
			default:
				continue // another department, or a shut-in corner of the target
			}
			l.mark[m] = l.gen
			l.prev[m] = u
			q = append(q, m)
		}
	}
	return dst, false
}

// walkBack appends the walk from `from` (exclusive) to `to` recorded in prev.
func (l *lattice) walkBack(dst []int32, from, to int32) []int32 {
	start := len(dst)
	for n := to; n != from; n = l.prev[n] {
		dst = append(dst, n)
	}
	for i, j := start, len(dst)-1; i < j; i, j = i+1, j-1 {
		dst[i], dst[j] = dst[j], dst[i]
	}
	return dst
}

package store

import (
	"fmt"
)

// Point is a sensor position on the plan.
type Point struct{ X, Y int }

// Rect is a rectangle with inclusive bounds.
type Rect struct{ Min, Max Point }

// Contains reports whether p lies inside r, borders included.
func (r Rect) Contains(p Point) bool {
	return r.Min.X <= p.X && p.X <= r.Max.X && r.Min.Y <= p.Y && p.Y <= r.Max.Y
}

// Area is the floor space of one department.
type Area struct {
	Department Department
	Rect       Rect
}

// Plan is the shop floor: a coordinate space (origin top-left, y down) with an
// entrance, an exit and the departments' areas. Everything not in an area is
// aisle. Sensors sit on a lattice of spacing Step anchored at the entrance;
// shoppers move one lattice step at a time.
type Plan struct {
	Name          string // "grid" or "original"
	Width, Height int    // coordinates run 0..Width-1 and 0..Height-1
	Step          int    // distance between neighbouring sensor positions
	Entrance      Point  // where shoppers come in
	Exit          Point  // where shoppers leave
	Areas         []Area // the departments; they do not overlap
}

// Plan names accepted by STORE_PLAN.
const (
	PlanGrid     = "grid"
	PlanOriginal = "original"
)

// NewPlan returns the named plan. width and height size the grid plan and are
// ignored by the original one, whose size is fixed.
func NewPlan(name string, width, height int) (*Plan, error) {
	switch name {
	case PlanGrid:
		return GridPlan(width, height)
	case PlanOriginal:
		return OriginalPlan(), nil
	}
	return nil, fmt.Errorf("store: unknown plan %q (want %q or %q)", name, PlanGrid, PlanOriginal)
}

// MinGridWidth and MinGridHeight are the smallest grid that still gives every
// department at least two cells (so a shopper can move inside it) and keeps
// the aisles between them.
const (
	MinGridWidth  = 4
	MinGridHeight = 8
)

// GridPlan lays the five departments out on a width × height grid of cells,
// one sensor per cell. Row 0 is the front aisle with the entrance at its left
// end and the exit at its right end; a cross aisle runs across the middle row,
// a back aisle along the last row, and a main aisle down column width/3:
//
//	    x: 0 1 2 3 4 5
//	y=0:   N . . . . X      N entrance, X exit
//	y=1:   W W . B B B      W Women, B Boys
//	y=2:   W W . B B B
//	y=3:   W W . G G G      G Girls
//	y=4:   W W . G G G
//	y=5:   . . . . . .      cross aisle
//	y=6:   M M . S S S      M Men, S Sports
//	y=7:   M M . S S S
//	y=8:   M M . S S S
//	y=9:   . . . . . .      back aisle
func GridPlan(width, height int) (*Plan, error) {
	if width < MinGridWidth || height < MinGridHeight {
		return nil, fmt.Errorf("store: grid plan %d×%d is too small: need at least %d×%d for five departments and their aisles",
			width, height, MinGridWidth, MinGridHeight)
	}
	aisle := width / 3 // main aisle column
	cross := height / 2
	topLast := cross - 1
	split := (1 + topLast) / 2 // Boys rows 1..split, Girls split+1..topLast
	back := height - 1
	return &Plan{
		Name:     PlanGrid,
		Width:    width,
		Height:   height,
		Step:     1,
		Entrance: Point{0, 0},
		Exit:     Point{width - 1, 0},
		Areas: []Area{
			{Women, Rect{Point{0, 1}, Point{aisle - 1, topLast}}},
			{Boys, Rect{Point{aisle + 1, 1}, Point{width - 1, split}}},
			{Girls, Rect{Point{aisle + 1, split + 1}, Point{width - 1, topLast}}},
			{Men, Rect{Point{0, cross + 1}, Point{aisle - 1, back - 1}}},
			{Sports, Rect{Point{aisle + 1, cross + 1}, Point{width - 1, back - 1}}},
		},
	}, nil
}

// OriginalPlan is the pixel plan of the original demo (1808 × 1315). Recorded
// demo scenarios use these coordinates. Its sensor lattice is 67 px, anchored
// at the entrance, which puts the exit two steps to the right of it.
func OriginalPlan() *Plan {
	return &Plan{
		Name:     PlanOriginal,
		Width:    1808,
		Height:   1315,
		Step:     67,
		Entrance: Point{937, 50},
		Exit:     Point{1071, 50},
		Areas: []Area{
			{Women, Rect{Point{444, 443}, Point{666, 879}}},
			{Boys, Rect{Point{672, 443}, Point{992, 658}}},
			{Girls, Rect{Point{998, 443}, Point{1317, 658}}},
			{Men, Rect{Point{672, 664}, Point{1317, 879}}},
			{Sports, Rect{Point{614, 984}, Point{1186, 1292}}},
		},
	}
}

// DepartmentAt returns the department whose area holds (x, y), or NoDepartment
// for an aisle or a point off the plan. It is on the hot path of every move:
// five rectangle checks, no allocation.
func (p *Plan) DepartmentAt(x, y int) Department {
	pt := Point{x, y}
	for i := range p.Areas {
		if p.Areas[i].Rect.Contains(pt) {
			return p.Areas[i].Department
		}
	}
	return NoDepartment
}

// Contains reports whether (x, y) lies on the plan.
func (p *Plan) Contains(x, y int) bool {
	return 0 <= x && x < p.Width && 0 <= y && y < p.Height
}

// Area returns the area of a department.
func (p *Plan) Area(d Department) (Area, bool) {
	for _, a := range p.Areas {
		if a.Department == d {
			return a, true
		}
	}
	return Area{}, false
}

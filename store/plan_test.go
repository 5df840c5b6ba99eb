package store

import (
	"fmt"
	"strings"
	"testing"
)

// picture draws a grid plan the way GridPlan's doc comment does.
func picture(p *Plan) string {
	letters := map[Department]string{NoDepartment: ".", Women: "W", Boys: "B", Girls: "G", Men: "M", Sports: "S"}
	var sb strings.Builder
	for y := range p.Height {
		for x := range p.Width {
			cell := letters[p.DepartmentAt(x, y)]
			switch (Point{x, y}) {
			case p.Entrance:
				cell = "N"
			case p.Exit:
				cell = "X"
			}
			if x > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(cell)
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}

func TestGridPlanPicture(t *testing.T) {
	// Copied from GridPlan's doc comment.
	const want = `N . . . . X
W W . B B B
W W . B B B
W W . G G G
W W . G G G
. . . . . .
M M . S S S
M M . S S S
M M . S S S
. . . . . .
`
	p, err := GridPlan(6, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := picture(p); got != want {
		t.Errorf("GridPlan(6, 10):\n%s\nwant:\n%s", got, want)
	}
}

func TestGridPlanTooSmall(t *testing.T) {
	minimum := fmt.Sprintf("%d×%d", MinGridWidth, MinGridHeight)
	for _, size := range [][2]int{{0, 0}, {-1, 10}, {MinGridWidth - 1, 10}, {6, MinGridHeight - 1}, {2, 5}} {
		p, err := GridPlan(size[0], size[1])
		if err == nil || p != nil {
			t.Errorf("GridPlan(%d, %d) = %v, %v; want an error", size[0], size[1], p, err)
			continue
		}
		if !strings.Contains(err.Error(), minimum) {
			t.Errorf("GridPlan(%d, %d) error %q does not mention the minimum %s", size[0], size[1], err, minimum)
		}
	}
}

func TestGridPlanLayout(t *testing.T) {
	for w := MinGridWidth; w <= 12; w++ {
		for h := MinGridHeight; h <= 20; h++ {
			t.Run(fmt.Sprintf("%dx%d", w, h), func(t *testing.T) {
				p, err := GridPlan(w, h)
				if err != nil {
					t.Fatal(err)
				}
				checkLayout(t, p, 2) // every department leaves room to move inside it
			})
		}
	}
}

// checkLayout checks a grid plan cell by cell: departments have room and do
// not overlap, entrance and exit are aisle, and every department cell can be
// reached from the entrance without crossing another department.
func checkLayout(t *testing.T, p *Plan, minCells int) {
	t.Helper()
	if len(p.Areas) != len(Departments) {
		t.Fatalf("%d areas, want %d", len(p.Areas), len(Departments))
	}
	cells := map[Department]int{}
	for y := range p.Height {
		for x := range p.Width {
			in := 0
			for _, a := range p.Areas {
				if a.Rect.Contains(Point{x, y}) {
					in++
				}
			}
			if in > 1 {
				t.Errorf("cell (%d,%d) lies in %d areas", x, y, in)
			}
			cells[p.DepartmentAt(x, y)]++
		}
	}
	for _, d := range Departments {
		if cells[d] < minCells {
			t.Errorf("%s has %d cells, want at least %d", d, cells[d], minCells)
		}
	}
	for name, pt := range map[string]Point{"entrance": p.Entrance, "exit": p.Exit} {
		if !p.Contains(pt.X, pt.Y) || p.DepartmentAt(pt.X, pt.Y) != NoDepartment {
			t.Errorf("%s %v is not an aisle cell on the plan", name, pt)
		}
	}

	for _, d := range Departments {
		reached := reachable(p, d)
		for y := range p.Height {
			for x := range p.Width {
				if p.DepartmentAt(x, y) == d && !reached[Point{x, y}] {
					t.Errorf("%s cell (%d,%d) cannot be reached from the entrance", d, x, y)
				}
			}
		}
	}
}

// reachable walks from the entrance in 4-neighbour steps through aisle cells
// and the cells of department d.
func reachable(p *Plan, d Department) map[Point]bool {
	seen := map[Point]bool{p.Entrance: true}
	queue := []Point{p.Entrance}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, step := range [...]Point{{1, 0}, {-1, 0}, {0, 1}, {0, -1}} {
			next := Point{cur.X + step.X, cur.Y + step.Y}
			if seen[next] || !p.Contains(next.X, next.Y) {
				continue
			}
			if dep := p.DepartmentAt(next.X, next.Y); dep != NoDepartment && dep != d {
				continue
			}
			seen[next] = true
			queue = append(queue, next)
		}
	}
	return seen
}

func TestOriginalPlanDepartmentAt(t *testing.T) {
	p := OriginalPlan()
	tests := []struct {
		x, y int
		want Department
	}{
		// Corners, borders included.
		{444, 443, Women}, {666, 443, Women}, {444, 879, Women}, {666, 879, Women},
		{672, 443, Boys}, {992, 443, Boys}, {672, 658, Boys}, {992, 658, Boys},
		{998, 443, Girls}, {1317, 443, Girls}, {998, 658, Girls}, {1317, 658, Girls},
		{672, 664, Men}, {1317, 664, Men}, {672, 879, Men}, {1317, 879, Men},
		{614, 984, Sports}, {1186, 984, Sports}, {614, 1292, Sports}, {1186, 1292, Sports},
		// Just outside the corners.
		{443, 443, NoDepartment}, {444, 442, NoDepartment}, {667, 879, NoDepartment}, {666, 880, NoDepartment},
		{613, 984, NoDepartment}, {1187, 1292, NoDepartment}, {1186, 1293, NoDepartment}, {1318, 500, NoDepartment},
		// The gaps between neighbouring departments are aisle.
		{669, 500, NoDepartment},  // Women | Boys
		{669, 800, NoDepartment},  // Women | Men
		{995, 500, NoDepartment},  // Boys | Girls
		{800, 661, NoDepartment},  // Boys / Men
		{1100, 661, NoDepartment}, // Girls / Men
		{900, 930, NoDepartment},  // Men / Sports
		// Entrance, exit and points off the plan.
		{937, 50, NoDepartment}, {1071, 50, NoDepartment},
		{-1, -1, NoDepartment}, {5000, 5000, NoDepartment},
	}
	for _, tt := range tests {
		if got := p.DepartmentAt(tt.x, tt.y); got != tt.want {
			t.Errorf("DepartmentAt(%d, %d) = %s, want %s", tt.x, tt.y, got, tt.want)
		}
	}
}

// Shoppers move on the sensor lattice, so every department must hold lattice
// points and the exit must be one.
func TestOriginalPlanLattice(t *testing.T) {
	p := OriginalPlan()
	points := map[Department]int{}
	var exitOnLattice bool
	// i and j run over every lattice point on the plan, left and up of the
	// entrance included.
	for i := -p.Entrance.X / p.Step; p.Entrance.X+i*p.Step < p.Width; i++ {
		for j := -p.Entrance.Y / p.Step; p.Entrance.Y+j*p.Step < p.Height; j++ {
			x, y := p.Entrance.X+i*p.Step, p.Entrance.Y+j*p.Step
			points[p.DepartmentAt(x, y)]++
			if (Point{x, y}) == p.Exit {
				exitOnLattice = true
			}
		}
	}
	for _, d := range Departments {
		if points[d] < 2 {
			t.Errorf("%s holds %d lattice points, want at least 2", d, points[d])
		}
	}
	if !exitOnLattice {
		t.Errorf("exit %v is not on the lattice (entrance %v, step %d)", p.Exit, p.Entrance, p.Step)
	}
	checkOriginalAreas(t, p)
}

func checkOriginalAreas(t *testing.T, p *Plan) {
	t.Helper()
	for i, a := range p.Areas {
		if !p.Contains(a.Rect.Min.X, a.Rect.Min.Y) || !p.Contains(a.Rect.Max.X, a.Rect.Max.Y) {
			t.Errorf("%s area %v leaves the %d×%d plan", a.Department, a.Rect, p.Width, p.Height)
		}
		for _, b := range p.Areas[i+1:] {
			if overlap(a.Rect, b.Rect) {
				t.Errorf("%s %v overlaps %s %v", a.Department, a.Rect, b.Department, b.Rect)
			}
		}
	}
}

func overlap(a, b Rect) bool {
	return a.Min.X <= b.Max.X && b.Min.X <= a.Max.X && a.Min.Y <= b.Max.Y && b.Min.Y <= a.Max.Y
}

func TestNewPlan(t *testing.T) {
	tests := []struct {
		name          string
		width, height int
		wantW, wantH  int
		wantErr       bool
	}{
		{PlanGrid, 6, 10, 6, 10, false},
		{PlanGrid, 2, 10, 0, 0, true},
		{PlanOriginal, 0, 0, 1808, 1315, false},
		{PlanOriginal, 6, 10, 1808, 1315, false}, // size ignored
		{"mall", 6, 10, 0, 0, true},
		{"", 6, 10, 0, 0, true},
		{"Grid", 6, 10, 0, 0, true},
	}
	for _, tt := range tests {
		p, err := NewPlan(tt.name, tt.width, tt.height)
		if tt.wantErr {
			if err == nil {
				t.Errorf("NewPlan(%q, %d, %d) = %+v, want an error", tt.name, tt.width, tt.height, p)
			}
			continue
		}
		if err != nil {
			t.Errorf("NewPlan(%q, %d, %d): %v", tt.name, tt.width, tt.height, err)
			continue
		}
		if p.Name != tt.name || p.Width != tt.wantW || p.Height != tt.wantH {
			t.Errorf("NewPlan(%q, %d, %d) = %s %d×%d, want %d×%d", tt.name, tt.width, tt.height, p.Name, p.Width, p.Height, tt.wantW, tt.wantH)
		}
	}

	_, err := NewPlan("mall", 6, 10)
	if err == nil || !strings.Contains(err.Error(), `"mall"`) {
		t.Errorf("NewPlan(mall) error %v does not name the plan", err)
	}
}

func TestPlanArea(t *testing.T) {
	p := OriginalPlan()
	for _, d := range Departments {
		a, ok := p.Area(d)
		if !ok || a.Department != d {
			t.Errorf("Area(%s) = %v, %v", d, a, ok)
		}
	}
	if _, ok := p.Area(NoDepartment); ok {
		t.Error("Area(NoDepartment) found an area")
	}
}

var sinkDepartment Department

func BenchmarkDepartmentAt(b *testing.B) {
	p := OriginalPlan()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// Walk the lattice so the benchmark sees hits and misses alike.
		sinkDepartment = p.DepartmentAt(p.Entrance.X+(i%20-10)*p.Step, p.Entrance.Y+(i%19)*p.Step)
		i++
	}
}

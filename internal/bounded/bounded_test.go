package bounded

import "testing"

func TestMakeRoom(t *testing.T) {
	tests := []struct {
		name  string
		m     map[string]int
		limit int
		want  bool
		left  int
	}{
		{name: "below the limit: nothing swept", m: map[string]int{"a": 0, "b": 1}, limit: 3, want: true, left: 2},
		{name: "full: stale entries make room", m: map[string]int{"a": 0, "b": 1, "c": 0}, limit: 3, want: true, left: 1},
		{name: "full: nothing stale", m: map[string]int{"a": 1, "b": 1}, limit: 2, want: false, left: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MakeRoom(tt.m, tt.limit, func(v int) bool { return v == 0 })
			if got != tt.want || len(tt.m) != tt.left {
				t.Errorf("MakeRoom = %v with %d entries left, want %v with %d", got, len(tt.m), tt.want, tt.left)
			}
		})
	}
}

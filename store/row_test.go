package store

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The row forms' JSON names are the tables' columns, in order: one list of
// names serves the CSV header, the JSON rows and the checks of both.
func TestRowColumns(t *testing.T) {
	tests := []struct {
		row     any
		columns []string
	}{
		{CustomerRow{}, CustomerColumns},
		{CouponRow{}, CouponColumns},
		{ProductRow{}, ProductColumns},
		{CouponProduct{}, CouponProductColumns},
	}
	for _, tt := range tests {
		typ := reflect.TypeOf(tt.row)
		t.Run(typ.Name(), func(t *testing.T) {
			var names []string
			for f := range typ.Fields() {
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				names = append(names, name)
			}
			if !slices.Equal(names, tt.columns) {
				t.Errorf("fields %v, want the columns %v", names, tt.columns)
			}
		})
	}
}

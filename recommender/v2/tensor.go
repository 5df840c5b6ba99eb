package v2

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/storeflow/storeflow/event"
)

// tensorData appends to dst the numbers of a tensor's "data", row-major.
// The protocol lets data be flat or nested to the tensor's shape; nested
// data must match the shape exactly, flat data must hold the shape's
// product of values. Numbers are parsed at bits precision (32 for FP32, so
// the value is the sender's float32 exactly). raw comes from a decoder; the
// event package's walker reads it, so a 1000-row request's 14000 numbers are
// not 14000 values built first.
func tensorData(raw []byte, shape []int64, bits int, dst []float64) ([]float64, error) {
	if event.Kind(raw) != event.KindList {
		return nil, errors.New("want a list of numbers")
	}
	want := int64(1)
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("shape %v: negative dimension", shape)
		}
		if d > 0 && want > int64(len(raw))/d { // every value takes a byte at least
			return nil, fmt.Errorf("shape %v: more values than the data could hold", shape)
		}
		want *= d
	}
	start := len(dst)
	nested := false // the first element is a list itself
	_ = event.EachElement(raw, func(_ int, val []byte) error {
		nested = event.Kind(val) == event.KindList
		return errStop
	})
	var err error
	if nested {
		dst, err = nestedList(raw, shape, bits, dst)
	} else {
		dst, err = flatList(raw, bits, dst)
	}
	if err != nil {
		return nil, err
	}
	if got := int64(len(dst) - start); got != want {
		return nil, fmt.Errorf("%d values for shape %v (want %d)", got, shape, want)
	}
	return dst, nil
}

// errStop ends a walk that has seen what it needed.
var errStop = errors.New("stop")

func flatList(raw []byte, bits int, dst []float64) ([]float64, error) {
	err := event.EachElement(raw, func(i int, val []byte) error {
		if event.Kind(val) != event.KindNumber {
			return fmt.Errorf("value %d: want a number, got %s", i, event.Kind(val))
		}
		v, err := strconv.ParseFloat(string(val), bits)
		if err != nil {
			return fmt.Errorf("value %d: number out of range", i)
		}
		dst = append(dst, v)
		return nil
	})
	return dst, err
}

func nestedList(raw []byte, shape []int64, bits int, dst []float64) ([]float64, error) {
	switch len(shape) {
	case 0:
		return nil, errors.New("nested deeper than the shape")
	case 1:
		start := len(dst)
		dst, err := flatList(raw, bits, dst)
		if err == nil && int64(len(dst)-start) != shape[0] {
			err = fmt.Errorf("a nested list has %d values where the shape says %d", len(dst)-start, shape[0])
		}
		return dst, err
	}
	count := int64(0)
	err := event.EachElement(raw, func(i int, val []byte) error {
		if event.Kind(val) != event.KindList {
			return fmt.Errorf("element %d: want a list, as the shape has %d dimensions", i, len(shape))
		}
		var err error
		dst, err = nestedList(val, shape[1:], bits, dst)
		count++
		return err
	})
	if err == nil && count != shape[0] {
		err = fmt.Errorf("nested data has %d lists where the shape says %d", count, shape[0])
	}
	return dst, err
}

// bitSize is the float precision of a V2 datatype.
func bitSize(datatype string) int {
	if datatype == datatypeFP64 {
		return 64
	}
	return 32
}

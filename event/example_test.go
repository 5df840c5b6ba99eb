package event_test

import (
	"fmt"

	"github.com/storeflow/storeflow/event"
	"github.com/storeflow/storeflow/store"
)

func ExampleDecodeMove() {
	// A recorded scenario: numeric id, float timestamp and coordinates.
	m, err := event.DecodeMove([]byte(`{"id":127,"ts":192322800.9,"x":3.4,"y":6.6}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%+v\n", m)

	// A timestamp in milliseconds is refused, naming the field.
	_, err = event.DecodeMove([]byte(`{"id":"127","ts":1700000000000,"x":3,"y":7}`))
	fmt.Println(event.ReasonOf(err))
	fmt.Println(err)
	// Output:
	// {ID:127 TS:192322800 X:3 Y:7}
	// invalid_field
	// event: field "ts": "1700000000000" is not unix seconds between 1970 and 9999
}

func ExampleAppendFocus() {
	buf := make([]byte, 0, 64)
	buf = event.AppendFocus(buf[:0], event.Focus{ID: "127", TS: 192322800, Dep: store.Boys})
	fmt.Println(string(buf))

	buf = event.AppendFocus(buf[:0], event.Focus{ID: "127", TS: 192322800, Dep: store.Sports, X: 3, Y: 7, HasPos: true})
	fmt.Println(string(buf))
	// Output:
	// {"id":"127","ts":192322800,"dep":"Boys"}
	// {"id":"127","ts":192322800,"dep":"Sports","x":3,"y":7}
}

func ExampleAppendBrowsing() {
	buf := make([]byte, 0, 64)
	buf = event.AppendBrowsing(buf[:0], event.Browsing{ID: "127", TS: 192322800, Dep: store.Men, X: 4, Y: 6, HasPos: true})
	fmt.Println(string(buf))

	// In an aisle: no "dep", as the original decision service sent it.
	buf = event.AppendBrowsing(buf[:0], event.Browsing{ID: "127", TS: 192322801, X: 2, Y: 5, HasPos: true})
	fmt.Println(string(buf))
	// Output:
	// {"id":"127","ts":192322800,"dep":"Men","x":4,"y":6}
	// {"id":"127","ts":192322801,"x":2,"y":5}
}

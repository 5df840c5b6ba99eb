package config

import (
	"strings"
	"testing"
)

func TestTestingModes(t *testing.T) {
	for name, tc := range map[string]struct {
		env       map[string]string
		endpoints bool
		mock      bool
		err       []string // substrings of the error; nil: no error
	}{
		"default":           {env: nil},
		"endpoints only":    {env: map[string]string{"HTTP_TEST_ENDPOINTS": "true"}, endpoints: true},
		"no mqtt":           {env: map[string]string{"TESTING_NO_MQTT": "true"}, endpoints: true, mock: true},
		"mock mqtt":         {env: map[string]string{"TESTING_MOCK_MQTT": "true"}, endpoints: true, mock: true},
		"both modes":        {env: map[string]string{"TESTING_NO_MQTT": "true", "TESTING_MOCK_MQTT": "true"}, endpoints: true, mock: true},
		"no mqtt with host": {env: map[string]string{"TESTING_NO_MQTT": "true", "MQTT_HOST": "broker.local"}, err: []string{"TESTING_NO_MQTT", `MQTT_HOST="broker.local"`}},
		"mock with host":    {env: map[string]string{"TESTING_MOCK_MQTT": "true", "MQTT_HOST": "broker.local"}, err: []string{"TESTING_MOCK_MQTT", "MQTT_HOST"}},
		"not a boolean":     {env: map[string]string{"TESTING_NO_MQTT": "yes please"}, err: []string{`TESTING_NO_MQTT="yes please"`}},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Load(tc.env)
			if tc.err != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, s := range tc.err {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %s", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.TestEndpoints() != tc.endpoints || c.MockMQTT() != tc.mock {
				t.Errorf("TestEndpoints, MockMQTT = %v, %v, want %v, %v", c.TestEndpoints(), c.MockMQTT(), tc.endpoints, tc.mock)
			}
		})
	}
}

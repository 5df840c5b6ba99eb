package config

import (
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/storeflow/storeflow/pipeline"
)

func TestLoadDefaults(t *testing.T) {
	c, err := Load(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]struct{ got, want any }{
		"MQTT_PORT":                    {c.Broker.Port, 1883},
		"BROKER_LISTEN_ADDR":           {c.Broker.Listen(), "127.0.0.1:1883"},
		"MQTT_NAME":                    {c.Broker.Name, "demoClient"},
		"embedded":                     {c.Broker.Embedded(), true},
		"HTTP_ADDR":                    {c.HTTPAddr, "127.0.0.1:8000"},
		"HTTP_READ_TIMEOUT":            {c.HTTPReadTimeout, 10 * time.Second},
		"HTTP_WRITE_TIMEOUT":           {c.HTTPWriteTimeout, 10 * time.Second},
		"HTTP_IDLE_TIMEOUT":            {c.HTTPIdleTimeout, 60 * time.Second},
		"HTTP_MAX_CONNECTIONS":         {c.HTTPMaxConnections, 1000},
		"STORE_WIDTH":                  {c.Store.Width, 6},
		"STORE_HEIGHT":                 {c.Store.Height, 10},
		"STORE_PLAN":                   {c.Store.Plan, "grid"},
		"COUPON_DATES":                 {c.Store.CouponDates, "auto"},
		"CUSTOMERS_AVERAGE_IN_STORE":   {c.Simulator.AverageInStore, 6},
		"CUSTOMERS_LIST_FILE":          {c.Simulator.CustomersFile, "customers.csv"},
		"CUSTOMERS_LIST_FILE set":      {c.CustomersFileSet, false},
		"SIMULATOR_ENABLED":            {c.Simulator.Enabled, true},
		"SIMULATOR_SPEED":              {c.Simulator.Speed, 1.0},
		"ENTER_TOPIC":                  {c.Simulator.EnterTopic, "customer/enter"},
		"MOVE_TOPIC":                   {c.Pipeline.MoveTopic, "customer/move"},
		"EXIT_TOPIC":                   {c.Pipeline.ExitTopic, "customer/exit"},
		"ENTRY_EVENT_TOPIC_NAME":       {c.Pipeline.EntryTopic, "customer/enter"},
		"FOCUS_EVENT_TOPIC_NAME":       {c.Pipeline.FocusTopic, "customer/focus"},
		"COUPON_PREDICTION_TOPIC_NAME": {c.Pipeline.PredictionTopic, "customer/prediction"},
		"FOCUS_DWELL":                  {c.Pipeline.FocusDwell, 10 * time.Second},
		"FOCUS_GAP":                    {c.Pipeline.FocusGap, 20 * time.Second},
		"BROWSING_TOPIC":               {c.Pipeline.BrowsingTopic, "customer/browsing"},
		"BROWSING_AFTER":               {c.Pipeline.BrowsingAfter, 30 * time.Second},
		"BROWSING_MOVES":               {c.Pipeline.BrowsingMoves, 20},
		"PREDICTION_THRESHOLD":         {c.Recommender.Threshold, 0.2},
		"LOG_LEVEL":                    {c.LogLevel.Level, slog.LevelInfo},
	}
	for name, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", name, ch.got, ch.want)
		}
	}
}

func TestLoadValues(t *testing.T) {
	c, err := Load(map[string]string{
		"MQTT_HOST": "broker.local", "MQTT_PORT": "8883", "MQTT_PORT_UNUSED": "x",
		"STORE_PLAN": "original", "SIMULATOR_SPEED": "20", "FOCUS_DWELL": "1m30s",
		"LOG_LEVEL": "warning", "CUSTOMERS_LIST_FILE": "/tmp/list.csv", "HTTP_ADDR": "off",
		"BROKER_LISTEN_ADDR": "0.0.0.0:2883",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Broker.Embedded() || c.Broker.Port != 8883 || c.Store.Plan != "original" || c.Simulator.Speed != 20 ||
		c.Pipeline.FocusDwell != 90*time.Second || c.LogLevel.Level != slog.LevelWarn || !c.CustomersFileSet ||
		c.HTTPAddr != HTTPOff || c.Broker.Listen() != "0.0.0.0:2883" {
		t.Fatalf("unexpected config: %+v", c)
	}
}

// Several instances behind one broker and one Redis: a valid setting.
func TestLoadShareGroup(t *testing.T) {
	c, err := Load(map[string]string{"MQTT_HOST": "mqtt", "MQTT_SHARE_GROUP": "storeflow", "DWELL_STATE": "redis", "REDIS_URL": "redis://r:6379/0"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Pipeline.ShareGroup != "storeflow" || c.Pipeline.DwellState != pipeline.DwellStateRedis {
		t.Fatalf("pipeline config %+v", c.Pipeline)
	}
}

// Every bad value stops the program with a message naming the variable and
// the value.
func TestLoadErrorsNameTheVariable(t *testing.T) {
	tests := map[string]struct {
		env  map[string]string
		want []string
	}{
		"speed not a number":             {map[string]string{"SIMULATOR_SPEED": "fast"}, []string{`SIMULATOR_SPEED="fast"`}},
		"speed zero":                     {map[string]string{"SIMULATOR_SPEED": "0"}, []string{"SIMULATOR_SPEED"}},
		"port out of range":              {map[string]string{"MQTT_PORT": "70000"}, []string{"MQTT_PORT=70000"}},
		"port not a number":              {map[string]string{"MQTT_PORT": "mqtt"}, []string{`MQTT_PORT="mqtt"`}},
		"dwell not a duration":           {map[string]string{"FOCUS_DWELL": "ten"}, []string{`FOCUS_DWELL="ten"`, "duration"}},
		"dwell too short":                {map[string]string{"FOCUS_DWELL": "500ms"}, []string{"FOCUS_DWELL=500ms"}},
		"gap negative":                   {map[string]string{"FOCUS_GAP": "-1s"}, []string{"FOCUS_GAP=-1s"}},
		"threshold above one":            {map[string]string{"PREDICTION_THRESHOLD": "1.5"}, []string{"PREDICTION_THRESHOLD=1.5"}},
		"unknown plan":                   {map[string]string{"STORE_PLAN": "mall"}, []string{`STORE_PLAN="mall"`}},
		"unknown coupon dates":           {map[string]string{"COUPON_DATES": "today"}, []string{`COUPON_DATES="today"`, "auto", "shift", "keep"}},
		"grid too small":                 {map[string]string{"STORE_WIDTH": "2"}, []string{"STORE_WIDTH=2"}},
		"bool":                           {map[string]string{"SIMULATOR_ENABLED": "yes please"}, []string{`SIMULATOR_ENABLED="yes please"`}},
		"log level":                      {map[string]string{"LOG_LEVEL": "loud"}, []string{`LOG_LEVEL="loud"`}},
		"average zero":                   {map[string]string{"CUSTOMERS_AVERAGE_IN_STORE": "0"}, []string{"CUSTOMERS_AVERAGE_IN_STORE"}},
		"listen addr":                    {map[string]string{"BROKER_LISTEN_ADDR": "localhost"}, []string{`BROKER_LISTEN_ADDR="localhost"`}},
		"http addr":                      {map[string]string{"HTTP_ADDR": "8000"}, []string{`HTTP_ADDR="8000"`}},
		"http read timeout":              {map[string]string{"HTTP_READ_TIMEOUT": "0s"}, []string{"HTTP_READ_TIMEOUT=0s"}},
		"http write timeout":             {map[string]string{"HTTP_WRITE_TIMEOUT": "soon"}, []string{`HTTP_WRITE_TIMEOUT="soon"`}},
		"http idle timeout":              {map[string]string{"HTTP_IDLE_TIMEOUT": "2h"}, []string{"HTTP_IDLE_TIMEOUT=2h0m0s"}},
		"http connections":               {map[string]string{"HTTP_MAX_CONNECTIONS": "0"}, []string{"HTTP_MAX_CONNECTIONS=0"}},
		"wildcard topic":                 {map[string]string{"COUPON_PREDICTION_TOPIC_NAME": "customer/#"}, []string{"COUPON_PREDICTION_TOPIC_NAME"}},
		"prediction loops back":          {map[string]string{"COUPON_PREDICTION_TOPIC_NAME": "customer/focus"}, []string{"COUPON_PREDICTION_TOPIC_NAME"}},
		"wildcard browsing topic":        {map[string]string{"BROWSING_TOPIC": "customer/+"}, []string{"BROWSING_TOPIC"}},
		"browsing loops back":            {map[string]string{"BROWSING_TOPIC": "customer/move"}, []string{"BROWSING_TOPIC"}},
		"browsing too soon":              {map[string]string{"BROWSING_AFTER": "100ms"}, []string{"BROWSING_AFTER=100ms"}},
		"overflow":                       {map[string]string{"PIPELINE_OVERFLOW": "spill"}, []string{`PIPELINE_OVERFLOW="spill"`}},
		"qos":                            {map[string]string{"MQTT_QOS": "3"}, []string{"MQTT_QOS=3"}},
		"empty host in the list":         {map[string]string{"MQTT_HOST": "a,,b"}, []string{`MQTT_HOST="a,,b"`}},
		"host list with a password":      {map[string]string{"MQTT_HOST": "tcp://u:pw@a,,b"}, []string{`MQTT_HOST="tcp://*****@a,,b"`}},
		"mock mode with a host":          {map[string]string{"MQTT_HOST": "tcp://u:pw@a", "TESTING_NO_MQTT": "true"}, []string{`MQTT_HOST="tcp://*****@a"`}},
		"prediction url with a password": {map[string]string{"PREDICTION_URL": "ftp://u:pw@x"}, []string{`PREDICTION_URL="ftp://*****@x"`}},
		"two bad values at once":         {map[string]string{"MQTT_PORT": "0", "STORE_PLAN": "mall"}, []string{"MQTT_PORT=0", `STORE_PLAN="mall"`}},
		"scorer":                         {map[string]string{"SCORER": "oracle"}, []string{`SCORER="oracle"`}},
		"model check too often":          {map[string]string{"MODEL_CHECK_EVERY": "1ms"}, []string{"MODEL_CHECK_EVERY=1ms"}},
		"retrain too often":              {map[string]string{"RETRAIN_EVERY": "100ms", "DATA_DIR": "data"}, []string{"RETRAIN_EVERY=100ms"}},
		"retrain without a history":      {map[string]string{"RETRAIN_EVERY": "1h"}, []string{"RETRAIN_EVERY=1h0m0s", "HISTORY_FILE", "DATA_DIR"}},
		"retrain a remote model": {map[string]string{"RETRAIN_EVERY": "1h", "HISTORY_FILE": "h.csv", "PREDICTION_URL": "http://p:8000"},
			[]string{"RETRAIN_EVERY=1h0m0s", "PREDICTION_URL"}},
		"retrain the random scorer": {map[string]string{"RETRAIN_EVERY": "1h", "HISTORY_FILE": "h.csv", "SCORER": "random"},
			[]string{"RETRAIN_EVERY=1h0m0s", "SCORER=random"}},
		"prediction url":              {map[string]string{"PREDICTION_URL": "ftp://x"}, []string{`PREDICTION_URL="ftp://x"`}},
		"prediction protocol":         {map[string]string{"PREDICTION_PROTOCOL": "grpc"}, []string{`PREDICTION_PROTOCOL="grpc"`}},
		"prediction timeout":          {map[string]string{"PREDICTION_TIMEOUT": "0s"}, []string{"PREDICTION_TIMEOUT=0s"}},
		"prediction headers":          {map[string]string{"PREDICTION_HEADERS": "Authorization Bearer"}, []string{"PREDICTION_HEADERS"}},
		"central url":                 {map[string]string{"CENTRAL_URL": "central:8000"}, []string{"CENTRAL_URL"}},
		"central timeout":             {map[string]string{"CENTRAL_TIMEOUT": "-1s"}, []string{"CENTRAL_TIMEOUT=-1s"}},
		"redis url":                   {map[string]string{"REDIS_URL": "http://:pw@redis:6379"}, []string{"REDIS_URL"}},
		"redis cluster without a url": {map[string]string{"REDIS_CLUSTER": "true"}, []string{"REDIS_CLUSTER=true", "REDIS_URL"}},
		"cache ttl":                   {map[string]string{"CACHE_TTL": "10ms"}, []string{"CACHE_TTL=10ms"}},
		"cache prefix":                {map[string]string{"CACHE_PREFIX": "a b"}, []string{`CACHE_PREFIX="a b"`}},
		"cache size":                  {map[string]string{"CACHE_MAX_ITEMS": "0"}, []string{"CACHE_MAX_ITEMS=0"}},
		"dwell state":                 {map[string]string{"DWELL_STATE": "disk"}, []string{`DWELL_STATE="disk"`}},
		"dwell state without redis":   {map[string]string{"DWELL_STATE": "redis"}, []string{"DWELL_STATE=redis", "REDIS_URL"}},
		"share group name":            {map[string]string{"MQTT_SHARE_GROUP": "a/b"}, []string{`MQTT_SHARE_GROUP="a/b"`}},
		"share group with the memory state": {map[string]string{"MQTT_SHARE_GROUP": "g", "MQTT_HOST": "mqtt", "REDIS_URL": "redis://r:6379"},
			[]string{`MQTT_SHARE_GROUP="g"`, "DWELL_STATE=redis", `DWELL_STATE="memory"`}},
		"share group without redis": {map[string]string{"MQTT_SHARE_GROUP": "g", "MQTT_HOST": "mqtt", "DWELL_STATE": "redis"},
			[]string{`MQTT_SHARE_GROUP="g"`, "REDIS_URL unset", "DWELL_STATE=redis needs REDIS_URL"}},
		"share group with the embedded broker": {map[string]string{"MQTT_SHARE_GROUP": "g", "DWELL_STATE": "redis", "REDIS_URL": "redis://r:6379"},
			[]string{`MQTT_SHARE_GROUP="g"`, "MQTT_HOST"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Load(tt.env)
			if err == nil {
				t.Fatal("Load accepted a bad value")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, secret := range []string{":pw@", "Bearer"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q echoes a secret", err)
				}
			}
		})
	}
}

func TestRedactedMasksSecrets(t *testing.T) {
	c, err := Load(map[string]string{"MQTT_HOST": "b,tcp://u:hunter2@c:1883", "MQTT_PASSWORD": "hunter2", "MQTT_USERNAME": "store",
		"REDIS_URL": "redis://:hunter2@r:6379/0", "REDIS_PASSWORD": "hunter2", "PREDICTION_HEADERS": "Authorization=Bearer hunter2",
		"PREDICTION_URL": "https://u:hunter2@model.example/", "CENTRAL_URL": "http://hunter2@central:8000"})
	if err != nil {
		t.Fatal(err)
	}
	got := c.Redacted()
	var joined strings.Builder
	for i := 0; i+1 < len(got); i += 2 {
		joined.WriteString(got[i].(string) + "=" + got[i+1].(string) + " ")
	}
	s := joined.String()
	for _, want := range []string{"MQTT_PASSWORD=*****", "MQTT_USERNAME=store", "MQTT_HOST=b,tcp://*****@c:1883",
		"REDIS_URL=redis://*****@r:6379/0", "PREDICTION_URL=https://*****@model.example/", "CENTRAL_URL=http://*****@central:8000"} {
		if !strings.Contains(s, want) {
			t.Errorf("Redacted() = %s, want %s", s, want)
		}
	}
	if strings.Contains(s, "hunter2") {
		t.Errorf("Redacted() = %s shows a secret", s)
	}
}

// The README's configuration table lists every variable with its default, and
// nothing else.
func TestReadmeListsEveryVariable(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([A-Z0-9_]+)` \\| ([^|]*) \\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		documented[m[1]] = strings.TrimSpace(m[2])
	}
	params := map[string]bool{}
	for _, p := range Params() {
		params[p.Key] = true
		d, ok := documented[p.Key]
		if !ok {
			t.Errorf("README configuration table lacks %s", p.Key)
			continue
		}
		switch {
		case p.Default == "" && d != "*(empty)*" && !strings.Contains(d, "$"):
			t.Errorf("README says %s defaults to %s, the code has no default", p.Key, d)
		case p.Default != "" && d != "`"+p.Default+"`":
			t.Errorf("README says %s defaults to %s, the code says %q", p.Key, d, p.Default)
		}
	}
	for k := range documented {
		if !params[k] {
			t.Errorf("README documents %s, which the program does not read", k)
		}
	}
}

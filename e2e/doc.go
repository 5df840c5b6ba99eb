// Package e2e holds the end-to-end tests: the real wiring (package app) with
// the embedded broker on a free loopback port, driven and observed by outside
// MQTT clients over TCP, exactly as sensors, phones and mosquitto_sub use it.
// Run them with the rest: go test -race ./...
package e2e

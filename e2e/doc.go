// Package e2e holds the end-to-end tests: the real wiring (package app) with
// the embedded broker on a free loopback port, driven and observed by outside
// MQTT clients over TCP, exactly as sensors, phones and mosquitto_sub use it;
// and the same wiring against a real mosquitto (started by the tests on a free
// port, with a password file) as an external broker.
// Run them with the rest: go test -race ./...
package e2e

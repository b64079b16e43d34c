// Package brokerpool decides which broker node a client goes to: the nodes in service and their state (up, down, draining), and the choice among the healthy ones (client-id affinity by rendezvous hashing, least connections, two random choices).
package brokerpool

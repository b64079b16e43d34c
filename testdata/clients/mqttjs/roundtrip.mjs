// One MQTT.js round trip, for mqttgate's interoperability tests:
//   node roundtrip.mjs URL VERSION(4|5) CAFILE|- TOPIC CLIENTID
// subscribes to TOPIC at QoS 1, publishes one QoS 1 message to it, and
// prints "got TOPIC PAYLOAD" when it comes back; exits 1 on any error or
// after 10 s.
import fs from 'node:fs'
import mqtt from 'mqtt'

const [url, version, ca, topic, clientId] = process.argv.slice(2)
const opts = { protocolVersion: Number(version), clientId, clean: true, reconnectPeriod: 0, connectTimeout: 5000 }
if (ca !== '-') {
  opts.ca = fs.readFileSync(ca)
  opts.servername = 'localhost'
}
const timer = setTimeout(() => { console.log('timeout'); process.exit(1) }, 10000)
const client = mqtt.connect(url, opts)
client.on('error', (err) => { console.log(`error ${err.message}`); process.exit(1) })
client.on('close', () => { if (!client.__done) { console.log('closed'); process.exit(1) } })
client.on('connect', () => {
  client.subscribe(topic, { qos: 1 }, (err, granted) => {
    if (err) { console.log(`subscribe ${err.message}`); process.exit(1) }
    client.publish(topic, 'mqttjs', { qos: 1 })
  })
})
client.on('message', (t, payload) => {
  console.log(`got ${t} ${payload}`)
  client.__done = true
  clearTimeout(timer)
  client.end(false, {}, () => process.exit(0))
})

// MQTT.js over WebSocket, for mqttgate's tests:
//   node wsacl.mjs URL VERSION(4|5) CAFILE|- USER PASSWORD OKTOPIC DENIEDTOPIC
// subscribes to OKTOPIC and DENIEDTOPIC at QoS 1 and prints "granted A B"
// (the SUBACK codes), publishes QoS 1 to DENIEDTOPIC and prints
// "denied-publish CODE" (v5: the PUBACK reason; 3.1.1: "acked"), then
// publishes to OKTOPIC and prints "got TOPIC PAYLOAD" when it comes back.
// Exits 1 on any error or after 10 s.
import fs from 'node:fs'
import mqtt from 'mqtt'

const [url, version, ca, username, password, okTopic, deniedTopic] = process.argv.slice(2)
const opts = { protocolVersion: Number(version), clientId: `wsjs-${version}-${process.pid}`, clean: true, reconnectPeriod: 0,
  connectTimeout: 5000, username, password, wsOptions: {} }
if (ca !== '-') {
  opts.ca = fs.readFileSync(ca)
  opts.servername = 'localhost'
  opts.wsOptions.ca = opts.ca
}
const timer = setTimeout(() => { console.log('timeout'); process.exit(1) }, 10000)
const client = mqtt.connect(url, opts)
client.on('error', (err) => { console.log(`error ${err.message}`); process.exit(1) })
client.on('close', () => { if (!client.__done) { console.log('closed'); process.exit(1) } })
client.on('connect', () => {
  client.subscribe([okTopic, deniedTopic], { qos: 1 }, (err, granted) => {
    // A failure code makes MQTT.js report an error carrying the SUBACK.
    const codes = err ? (err.packet ? err.packet.granted : null) : granted.map((g) => g.qos)
    if (!codes) { console.log(`subscribe ${err.message}`); process.exit(1) }
    console.log(`granted ${codes.join(' ')}`)
    client.publish(deniedTopic, 'no', { qos: 1 }, (err, packet) => {
      if (err) {
        console.log(`denied-publish ${err.code}`)
      } else {
        console.log(`denied-publish ${packet && packet.reasonCode !== undefined ? packet.reasonCode : 'acked'}`)
      }
      client.publish(okTopic, 'over-ws', { qos: 1 })
    })
  })
})
client.on('message', (t, payload) => {
  console.log(`got ${t} ${payload}`)
  client.__done = true
  clearTimeout(timer)
  client.end(false, {}, () => process.exit(0))
})

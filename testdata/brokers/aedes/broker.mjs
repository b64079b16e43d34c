// Aedes behind a PROXY protocol sender, for mqttgate's interoperability
// tests: node broker.mjs PORT. It prints "listening PORT" once it serves,
// and for every client it admits a JSON line with the client id and the
// address aedes-protocol-decoder read from the PROXY header.
import { Aedes } from 'aedes'
import { createServer } from 'aedes-server-factory'
import { protocolDecoder } from 'aedes-protocol-decoder'

const port = Number(process.argv[2])
const broker = await Aedes.createBroker({
  preConnect (client, packet, done) {
    console.log(JSON.stringify({ event: 'connect', id: packet.clientId, ip: client.connDetails?.ipAddress ?? null }))
    done(null, true)
  }
})
const server = createServer(broker, { trustProxy: true, protocolDecoder })
server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`))
process.on('SIGTERM', () => { server.close(); broker.close(() => process.exit(0)) })

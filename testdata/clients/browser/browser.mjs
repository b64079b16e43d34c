// Debian's Chromium, headless, driven by playwright-core, for mqttgate's
// browser test:
//   node browser.mjs GOOD_URL BAD_URL SPKI_SHA256_BASE64
// opens GOOD_URL (a page whose MQTT.js connects over wss and subscribes)
// and prints "subscribed" once the page's title says so, then the title
// that a message turns it into ("got:TOPIC:PAYLOAD"); then opens BAD_URL
// (the same page from an Origin mqttgate does not list) and prints
// "other origin: TITLE" once it has settled. The server certificate is
// trusted by its key (the test CA issued it): nothing else is.
import { chromium } from 'playwright-core'

const [good, bad, spki] = process.argv.slice(2)
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--ignore-certificate-errors-spki-list=${spki}`],
})
const waitTitle = async (page, pred, what) => {
  for (let i = 0; i < 150; i++) { // 15 s
    const t = await page.title()
    if (pred(t)) return t
    await page.waitForTimeout(100)
  }
  throw new Error(`timed out waiting for ${what}; title ${await page.title()}`)
}
try {
  const page = await browser.newPage()
  await page.goto(good)
  console.log(await waitTitle(page, (t) => t === 'subscribed' || t.startsWith('error') || t === 'closed', 'the subscription'))
  console.log(await waitTitle(page, (t) => t.startsWith('got:') || t.startsWith('error') || t === 'closed', 'a message'))
  const other = await browser.newPage()
  await other.goto(bad)
  console.log('other origin: ' + await waitTitle(other, (t) => t !== 'loading', 'the other page to settle'))
} catch (e) {
  console.log(`error ${e.message}`)
  process.exitCode = 1
} finally {
  await browser.close()
}

#!/usr/bin/env bash
# Regenerates the example prompts from text (Debian: espeak-ng, sox).
# The owner replaces these with their own recordings; any PCM WAV works.
set -euo pipefail
cd "$(dirname "$0")"
say() { # file text
  espeak-ng -v en-us -s 150 -w "/tmp/denwa-$1" "$2"
  # 8 kHz 16-bit mono keeps the repo small; denwa resamples anything else.
  sox "/tmp/denwa-$1" -r 8000 -c 1 -b 16 "$1" norm -3
  rm -f "/tmp/denwa-$1"
}
say closed.wav "Thank you for calling. We are not available by phone right now. Please use the contact form on our website, or send us an email. Goodbye."
say delivery.wav "Delivery line. Thank you, courier. Our staff will call you back shortly. Goodbye."
say partner.wav "Partner line. Our staff are being notified. For urgent fraud alerts, please also send an email. Goodbye."
say message.wav "Thank you for calling. We cannot come to the phone right now. Please leave your name, your number and a short message after the tone, and we will call you back."
say delivery-message.wav "Delivery line. Sorry, our staff cannot answer right now. Please leave a message after the tone with the tracking number, and we will call you back shortly."

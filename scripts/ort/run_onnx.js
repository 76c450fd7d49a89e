#!/usr/bin/env node
// Runs an ONNX model in ONNX Runtime (CPU, the npm package onnxruntime-node pinned in package-lock.json)
// on raw little-endian float32 images and writes the raw float32 outputs.
//   node scripts/ort/run_onnx.js MODEL.onnx IMAGES.f32 N C H W OUT.f32 [BATCH [OPT]]
// IMAGES.f32 holds N*C*H*W floats (NCHW); OUT.f32 receives N*K floats (the model's first output).
// OPT: ONNX Runtime's graph optimization level, all (default: what a deployment gets; QDQ pairs are fused
// into integer kernels) | extended | basic | disabled (every node as written, float kernels).
// Install: scripts/install-ort.sh (ONNXRUNTIME_NODE_INSTALL=skip npm ci in this folder).
'use strict';
const fs = require('fs');

async function main() {
  const a = process.argv.slice(2);
  if (a.length < 7) {
    console.error('usage: run_onnx.js MODEL.onnx IMAGES.f32 N C H W OUT.f32 [BATCH [OPT]]');
    process.exit(2);
  }
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    console.error('run_onnx.js: onnxruntime-node is not installed (run scripts/install-ort.sh): ' + e.message);
    process.exit(3);
  }
  const [model, images, out] = [a[0], a[1], a[6]];
  const [n, c, h, w] = a.slice(2, 6).map((s) => parseInt(s, 10));
  const batch = a.length > 7 ? parseInt(a[7], 10) : 256;
  const level = a.length > 8 ? a[8] : 'all';
  const per = c * h * w;
  const buf = fs.readFileSync(images);
  if (buf.length !== n * per * 4) {
    console.error(`run_onnx.js: ${images} has ${buf.length} bytes, expected ${n * per * 4} (${n}x${c}x${h}x${w} float32)`);
    process.exit(2);
  }
  const data = new Float32Array(buf.buffer, buf.byteOffset, n * per);
  const opts = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: level };
  const session = await ort.InferenceSession.create(model, opts);
  const input = session.inputNames[0], output = session.outputNames[0];
  const parts = [];
  for (let b = 0; b < n; b += batch) {
    const m = Math.min(batch, n - b);
    const x = new ort.Tensor('float32', data.slice(b * per, (b + m) * per), [m, c, h, w]);
    const r = await session.run({ [input]: x });
    parts.push(Buffer.from(new Float32Array(r[output].data).buffer));
  }
  fs.writeFileSync(out, Buffer.concat(parts));
}

main().catch((e) => {
  console.error('run_onnx.js: ' + (e && e.message ? e.message : e));
  process.exit(1);
});

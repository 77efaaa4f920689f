// RandAugment (src/data/randaugment.ts) against PIL, which timm's RandAugment runs on: each pixel op
// with the same explicit argument on the same pixels (exact for the integer and blend ops, within one
// level in under 1% of bytes for the resampling ops), then the config-string parser, the statistics
// of the random draws (op choice, apply probability, magnitude noise, signs, resampling), and
// determinism (same seed, same bytes). The PIL comparisons run the native image module's ops too
// (nativeRandAugment, what the loader uses when the module loaded), with the same tolerances.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { nativeImage, nativeRandAugment } from '../src/data/native-image.js';
import { Random } from '../src/data/random.js';
import {
  autoContrast, brightness, color, contrast, equalize, invert, parseRandAugment, posterize, RAND_INCREASING_TRANSFORMS, RAND_TRANSFORMS,
  randAugment, randAugmentSteps, type RandAugmentConfig, type RandAugmentOpName, type RandAugmentStep, type ResampleMode, rotate, sharpness, shearX, shearY, solarize, solarizeAdd,
  translateX, translateY,
} from '../src/data/randaugment.js';
import type { RawImage } from '../src/data/transforms.js';
import { compareBytes, testImage } from './helpers/images.js';
import { skipWithout } from './helpers/skip.js';

const PYTHON = process.env.MASKSUB_PYTHON ?? '/usr/bin/python3';

function pilMissing(): string | null {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  try {
    execFileSync(PYTHON, ['-c', 'import PIL, numpy'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'Python PIL (python3-pil) and numpy are not installed (apt-get install python3-torchvision brings both)';
  }
}
const missing = pilMissing();

const directory = mkdtempSync(join(tmpdir(), 'masksub-randaugment-'));
after(() => rmSync(directory, { recursive: true, force: true }));


type Case = { op: string; argument?: number; resample?: ResampleMode; fill?: number[] };

/**
 * Runs every case through PIL on `image` (mode RGB or L); returns each result's bytes (HWC). With
 * `chained`, each case runs on the previous one's result and only the last result comes back.
 */
function pil(image: RawImage, cases: readonly Case[], chained = false): number[][] {
  const path = join(directory, `image-${image.height}x${image.width}x${image.channels}.bin`);
  writeFileSync(path, image.pixels);
  const shape = image.channels === 1 ? `(${image.height}, ${image.width})` : `(${image.height}, ${image.width}, 3)`;
  const script = `
import json, numpy as np
from PIL import Image, ImageOps, ImageEnhance
image = Image.fromarray(np.fromfile(${JSON.stringify(path)}, dtype=np.uint8).reshape(${shape}).copy())
modes = {'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC}
def run(c, image):
    op, arg = c['op'], c.get('argument')
    kw = dict(resample=modes[c['resample']], fillcolor=tuple(c['fill']) if image.mode == 'RGB' else c['fill'][0]) if 'resample' in c else {}
    if op == 'autoContrast': return ImageOps.autocontrast(image)
    if op == 'equalize': return ImageOps.equalize(image)
    if op == 'invert': return ImageOps.invert(image)
    if op == 'posterize': return image if arg >= 8 else ImageOps.posterize(image, arg)
    if op == 'solarize': return ImageOps.solarize(image, arg)
    if op == 'solarizeAdd': return image.point([min(255, i + arg) if i < 128 else i for i in range(256)] * len(image.getbands()))
    if op == 'color': return ImageEnhance.Color(image).enhance(arg)
    if op == 'contrast': return ImageEnhance.Contrast(image).enhance(arg)
    if op == 'brightness': return ImageEnhance.Brightness(image).enhance(arg)
    if op == 'sharpness': return ImageEnhance.Sharpness(image).enhance(arg)
    if op == 'rotate': return image.rotate(arg, **kw)
    if op == 'shearX': return image.transform(image.size, Image.AFFINE, (1, arg, 0, 0, 1, 0), **kw)
    if op == 'shearY': return image.transform(image.size, Image.AFFINE, (1, 0, 0, arg, 1, 0), **kw)
    if op == 'translateX': return image.transform(image.size, Image.AFFINE, (1, 0, arg, 0, 1, 0), **kw)
    if op == 'translateY': return image.transform(image.size, Image.AFFINE, (1, 0, 0, 0, 1, arg), **kw)
    raise ValueError(op)
cases = json.loads(${JSON.stringify(JSON.stringify(cases))})
if ${chained ? 'True' : 'False'}:
    for c in cases: image = run(c, image)
    print(json.dumps([np.asarray(image).reshape(-1).tolist()]))
else:
    print(json.dumps([np.asarray(run(c, image)).reshape(-1).tolist() for c in cases]))
`;
  return JSON.parse(execFileSync(PYTHON, ['-c', script], { encoding: 'utf8', timeout: 120000, maxBuffer: 1 << 28 })) as number[][];
}


function ours(image: RawImage, entry: Case): RawImage {
  const argument = entry.argument ?? 0;
  const resample = entry.resample ?? 'bilinear';
  const fill = entry.fill ?? [128, 128, 128];
  switch (entry.op) {
    case 'autoContrast': return autoContrast(image);
    case 'equalize': return equalize(image);
    case 'invert': return invert(image);
    case 'posterize': return posterize(image, argument);
    case 'solarize': return solarize(image, argument);
    case 'solarizeAdd': return solarizeAdd(image, argument);
    case 'color': return color(image, argument);
    case 'contrast': return contrast(image, argument);
    case 'brightness': return brightness(image, argument);
    case 'sharpness': return sharpness(image, argument);
    case 'rotate': return rotate(image, argument, resample, fill);
    case 'shearX': return shearX(image, argument, resample, fill);
    case 'shearY': return shearY(image, argument, resample, fill);
    case 'translateX': return translateX(image, argument, resample, fill);
    case 'translateY': return translateY(image, argument, resample, fill);
    default: throw new Error(entry.op);
  }
}

/** PIL's op names as our steps (translations as a fraction of the side, as timm gives them). */
const STEP_OPS: Record<string, RandAugmentOpName> = {
  autoContrast: 'AutoContrast', equalize: 'Equalize', invert: 'Invert', posterize: 'Posterize', solarize: 'Solarize', solarizeAdd: 'SolarizeAdd',
  color: 'Color', contrast: 'Contrast', brightness: 'Brightness', sharpness: 'Sharpness', rotate: 'Rotate', shearX: 'ShearX', shearY: 'ShearY',
  translateX: 'TranslateXRel', translateY: 'TranslateYRel',
};

/** The case through the native module's ops, or null when the module was not built. */
function oursNative(image: RawImage, entry: Case): RawImage | null {
  if (nativeImage === null) return null;
  let argument = entry.argument ?? null;
  if (entry.op === 'translateX') argument = entry.argument! / image.width;
  if (entry.op === 'translateY') argument = entry.argument! / image.height;
  const step: RandAugmentStep = { op: STEP_OPS[entry.op]!, applied: true, magnitude: 0, argument, interpolation: entry.resample ?? null };
  return nativeRandAugment(nativeImage, image, [step], { fill: entry.fill ?? [128, 128, 128] });
}

/** Our results of a case: the JavaScript ops, and the native module's when it loaded. */
function bothOurs(image: RawImage, entry: Case): [string, RawImage][] {
  const native = oursNative(image, entry);
  return native === null ? [['JavaScript', ours(image, entry)]] : [['JavaScript', ours(image, entry)], ['native', native]];
}

const name = (entry: Case): string => `${entry.op}(${entry.argument ?? ''}${entry.resample ? `, ${entry.resample}` : ''})`;

describe('RandAugment ops against PIL on the same pixels', () => {
  const rgb = testImage(48, 64, 3);
  // Values confined to 60..190: autocontrast has something to stretch.
  const narrow = testImage(40, 52, 5, 3, 60, 190);
  const gray = testImage(37, 45, 9, 1);

  const exactCases: Case[] = [
    { op: 'autoContrast' }, { op: 'equalize' }, { op: 'invert' },
    ...[0, 1, 2, 4, 8].map((argument) => ({ op: 'posterize', argument })),
    ...[0, 26, 128, 204, 256].map((argument) => ({ op: 'solarize', argument })),
    ...[0, 33, 110].map((argument) => ({ op: 'solarizeAdd', argument })),
    ...['color', 'contrast', 'brightness', 'sharpness'].flatMap((op) => [0, 0.1, 0.37, 1, 1.27, 1.9, 2.6].map((argument) => ({ op, argument }))),
  ];

  for (const [label, image] of [['RGB 48x64', rgb], ['RGB 40x52, values 60-190', narrow], ['L 37x45', gray]] as const) {
    test(`integer and blend ops equal PIL byte for byte (${label})`, (t) => {
      if (skipWithout(t, missing)) return;
      const reference = pil(image, exactCases);
      exactCases.forEach((entry, index) => {
        for (const [path, result] of bothOurs(image, entry)) {
          const { largest, differing } = compareBytes(result.pixels, reference[index]!);
          assert.equal(largest, 0, `${name(entry)} (${path}): largest difference ${largest}, ${(differing * 100).toFixed(2)}% of bytes differ`);
        }
      });
    });
  }

  test('a flat image: autocontrast and equalize leave it alone, as PIL does', (t) => {
    if (skipWithout(t, missing)) return;
    const flat: RawImage = { pixels: new Uint8Array(20 * 30 * 3).fill(77), height: 20, width: 30, channels: 3 };
    const cases: Case[] = [{ op: 'autoContrast' }, { op: 'equalize' }, { op: 'contrast', argument: 1.6 }, { op: 'sharpness', argument: 1.9 }];
    const reference = pil(flat, cases);
    cases.forEach((entry, index) => {
      for (const [path, result] of bothOurs(flat, entry)) assert.equal(compareBytes(result.pixels, reference[index]!).largest, 0, `${name(entry)} (${path})`);
    });
  });

  const fill = [124, 116, 104];
  const geometricCases: Case[] = (['bilinear', 'bicubic'] as ResampleMode[]).flatMap((resample) => [
    ...[30, -30, 13.5, -2.7, 0].map((argument) => ({ op: 'rotate', argument, resample, fill })),
    ...[0.3, -0.3, 0.117].map((argument) => ({ op: 'shearX', argument, resample, fill })),
    ...[0.3, -0.21].map((argument) => ({ op: 'shearY', argument, resample, fill })),
    // 0.45 of the width and height (timm's largest relative translation) and fractional shifts.
    ...[0.45 * 64, -0.45 * 64, 7.3, -0.6].map((argument) => ({ op: 'translateX', argument, resample, fill })),
    ...[0.45 * 48, -11.25].map((argument) => ({ op: 'translateY', argument, resample, fill })),
  ]);

  for (const [label, image] of [['RGB 48x64', rgb], ['L 37x45', gray]] as const) {
    test(`rotate, shear and translate (bilinear, bicubic, fill) match PIL within 1 level in <1% of bytes (${label})`, (t) => {
      if (skipWithout(t, missing)) return;
      const reference = pil(image, geometricCases);
      geometricCases.forEach((entry, index) => {
        for (const [path, result] of bothOurs(image, entry)) {
          const { largest, differing } = compareBytes(result.pixels, reference[index]!);
          assert.ok(largest <= 1 && differing < 0.01, `${name(entry)} (${path}): largest difference ${largest}, ${(differing * 100).toFixed(2)}% of bytes differ`);
        }
      });
    });
  }
});

/** The PIL case of one drawn step, with the argument timm's op function receives. */
function caseOfStep(step: RandAugmentStep, image: RawImage, fill: number[]): Case {
  const op = {
    AutoContrast: 'autoContrast', Equalize: 'equalize', Invert: 'invert', Rotate: 'rotate', Posterize: 'posterize', PosterizeIncreasing: 'posterize',
    Solarize: 'solarize', SolarizeIncreasing: 'solarize', SolarizeAdd: 'solarizeAdd', Color: 'color', ColorIncreasing: 'color',
    Contrast: 'contrast', ContrastIncreasing: 'contrast', Brightness: 'brightness', BrightnessIncreasing: 'brightness',
    Sharpness: 'sharpness', SharpnessIncreasing: 'sharpness', ShearX: 'shearX', ShearY: 'shearY', TranslateXRel: 'translateX', TranslateYRel: 'translateY',
  }[step.op];
  // timm's translate_x_rel / translate_y_rel: pct * img.size[0] / img.size[1] pixels.
  let argument = step.argument ?? undefined;
  if (step.op === 'TranslateXRel') argument = step.argument! * image.width;
  if (step.op === 'TranslateYRel') argument = step.argument! * image.height;
  return { op, ...(argument === undefined ? {} : { argument }), ...(step.interpolation === null ? {} : { resample: step.interpolation, fill }) };
}

describe('RandAugment end to end', () => {
  test('whole images: our draws applied one after another equal PIL running the same ops (plain and inc1 sets)', (t) => {
    if (skipWithout(t, missing)) return;
    const image = testImage(36, 44, 17);
    const fill = [124, 116, 104];
    for (const [text, seed] of [['rand-m9-n4-p1-mstd0.5-inc1', 1], ['rand-m7-n4-p0.8-mstd0.5', 2], ['rand-m10-n3-p1-inc1', 3], ['rand-m9-n3-p1', 4]] as const) {
      const config = parseRandAugment(text);
      for (let draw = 0; draw < 3; draw++) {
        const random = new Random(seed * 100 + draw);
        const steps = randAugmentSteps(config, new Random(seed * 100 + draw), { fill });
        const cases = steps.filter((step) => step.applied).map((step) => caseOfStep(step, image, fill));
        const result = randAugment(image, config, random, { fill });
        const expected = cases.length === 0 ? [...image.pixels] : pil(image, cases, true)[0]!;
        const results: [string, RawImage][] = [['JavaScript', result]];
        if (nativeImage !== null) results.push(['native', nativeRandAugment(nativeImage, image, steps, { fill })]);
        for (const [path, pixels] of results) {
          const { largest, differing } = compareBytes(pixels.pixels, expected);
          assert.ok(largest <= 1 && differing < 0.01, `${text} draw ${draw} (${cases.map(name).join(' -> ')}, ${path}): largest ${largest}, ${(differing * 100).toFixed(2)}% differ`);
        }
      }
    }
  });
});

describe('RandAugment config strings (timm rand_augment_transform)', () => {
  const base: RandAugmentConfig = { magnitude: 10, layers: 2, probability: 0.5, magnitudeStd: 0, magnitudeMax: 10, increasing: false };

  test('valid strings give timm settings (defaults m10 n2 p0.5 mstd0 mmax10)', () => {
    assert.deepEqual(parseRandAugment('rand'), base);
    assert.deepEqual(parseRandAugment('rand-m9-mstd0.5-inc1'), { ...base, magnitude: 9, magnitudeStd: 0.5, increasing: true });
    assert.deepEqual(parseRandAugment('rand-m7-mstd0.5'), { ...base, magnitude: 7, magnitudeStd: 0.5 });
    assert.deepEqual(parseRandAugment('rand-m9-n2-mstd0.5'), { ...base, magnitude: 9, magnitudeStd: 0.5 });
    assert.deepEqual(parseRandAugment('rand-n3-m15-mmax20-p0.25'), { ...base, magnitude: 15, layers: 3, magnitudeMax: 20, probability: 0.25 });
    assert.deepEqual(parseRandAugment('rand-m6-mstd101'), { ...base, magnitude: 6, magnitudeStd: Number.POSITIVE_INFINITY });
    assert.deepEqual(parseRandAugment('rand-p1-mstd1'), { ...base, probability: 1, magnitudeStd: 1 });
  });

  test('errors name the bad part', () => {
    const cases: [string, RegExp][] = [
      ['randaug-m9', /must start with 'rand'.*'randaug'/],
      ['m9-rand', /must start with 'rand'/],
      ['rand-m9.5', /section 'm9\.5' needs a non-negative integer after 'm'/],
      ['rand-x3', /section 'x3' has an unknown key 'x'/],
      ['rand-m9-foo', /section 'foo' is not a key followed by a number/],
      ['rand--m9', /section '' is not a key/],
      ['rand-m9-inc0', /section 'inc0' must be 'inc1'/],
      ['rand-p1.5', /section 'p1\.5' is a probability above 1/],
      ['rand-mstd0.5x', /section 'mstd0\.5x' needs a non-negative number/],
      ['rand-m9-m7', /section 'm7' repeats 'm'/],
      ['rand-mmax0', /section 'mmax0' must be at least 1/],
      ['rand-m9-tweights', /section 'tweights' names a transform set/],
    ];
    for (const [text, pattern] of cases) assert.throws(() => parseRandAugment(text), pattern, text);
  });
});

describe('RandAugment random draws', () => {
  const draws = 20000;

  test('ops are chosen uniformly with replacement from the plain or the increasing set', () => {
    for (const [text, set] of [['rand-m9-n3-p1', RAND_TRANSFORMS], ['rand-m9-n3-p1-inc1', RAND_INCREASING_TRANSFORMS]] as const) {
      const config = parseRandAugment(text);
      const random = new Random(11);
      const counts = new Map<string, number>();
      let repeats = 0;
      for (let draw = 0; draw < draws; draw++) {
        const steps = randAugmentSteps(config, random);
        assert.equal(steps.length, 3);
        for (const step of steps) counts.set(step.op, (counts.get(step.op) ?? 0) + 1);
        if (new Set(steps.map((step) => step.op)).size < 3) repeats++;
      }
      assert.deepEqual([...counts.keys()].sort(), [...set].sort(), text);
      const expected = (draws * 3) / set.length;
      // Binomial sd is sqrt(n p (1-p)) ~ 62 here; 5 sd.
      for (const [op, count] of counts) assert.ok(Math.abs(count - expected) < 5 * Math.sqrt(expected), `${text} ${op}: ${count} vs ${expected}`);
      // With replacement: P(some repeat among 3 of 15) = 1 - (14/15)(13/15) = 0.191.
      assert.ok(Math.abs(repeats / draws - 0.1911) < 0.015, `${text}: repeats ${repeats / draws}`);
    }
  });

  test('each op is applied with probability p; magnitudes are m + mstd * N(0, 1) clipped to [0, mmax]', () => {
    const random = new Random(5);
    const config = parseRandAugment('rand-m9-mstd0.5-p0.3');
    const magnitudes: number[] = [];
    let total = 0;
    for (let draw = 0; draw < draws; draw++) {
      for (const step of randAugmentSteps(config, random)) {
        total++;
        if (step.applied) magnitudes.push(step.magnitude);
        else assert.equal(step.argument, null);
      }
    }
    assert.ok(Math.abs(magnitudes.length / total - 0.3) < 0.01, `applied share ${magnitudes.length / total}`);
    const mean = magnitudes.reduce((sum, value) => sum + value, 0) / magnitudes.length;
    const std = Math.sqrt(magnitudes.reduce((sum, value) => sum + (value - mean) ** 2, 0) / magnitudes.length);
    // N(9, 0.5) clipped at 10 (2 sd): the mean drops by ~0.004 and the sd by ~1%.
    assert.ok(Math.abs(mean - 9) < 0.02, `mean ${mean}`);
    assert.ok(Math.abs(std - 0.5) < 0.02, `std ${std}`);
    assert.ok(Math.max(...magnitudes) <= 10 && Math.min(...magnitudes) >= 0);
    assert.ok(magnitudes.filter((value) => value === 10).length > 0.015 * magnitudes.length, 'the clip at 10 is reached (P(N > 2 sd) = 2.3%)');

    // Without noise the magnitude is m, clipped to mmax; mstd > 100 is uniform in [0, m].
    const fixed = randAugmentSteps(parseRandAugment('rand-m15-p1'), new Random(1));
    assert.deepEqual(fixed.map((step) => step.magnitude), [10, 10]);
    const raised = randAugmentSteps(parseRandAugment('rand-m15-mmax20-p1'), new Random(1));
    assert.deepEqual(raised.map((step) => step.magnitude), [15, 15]);
    const uniform: number[] = [];
    const uniformRandom = new Random(8);
    for (let draw = 0; draw < 5000; draw++) for (const step of randAugmentSteps(parseRandAugment('rand-m8-mstd200-p1'), uniformRandom)) uniform.push(step.magnitude);
    const uniformMean = uniform.reduce((sum, value) => sum + value, 0) / uniform.length;
    assert.ok(Math.abs(uniformMean - 4) < 0.05 && Math.min(...uniform) >= 0 && Math.max(...uniform) < 8, `uniform mean ${uniformMean}`);
  });

  test("arguments follow timm's level functions: signs split evenly, resampling bilinear / bicubic evenly", () => {
    const random = new Random(21);
    const config = parseRandAugment('rand-m9-n2-p1-inc1');
    const arguments_ = new Map<string, number[]>();
    let bicubic = 0;
    let geometric = 0;
    for (let draw = 0; draw < draws; draw++) {
      for (const step of randAugmentSteps(config, random)) {
        if (step.argument !== null) arguments_.set(step.op, [...(arguments_.get(step.op) ?? []), step.argument]);
        if (step.interpolation !== null) {
          geometric++;
          if (step.interpolation === 'bicubic') bicubic++;
        }
      }
    }
    assert.ok(Math.abs(bicubic / geometric - 0.5) < 0.02, `bicubic share ${bicubic / geometric}`);
    const expectSigned = (op: string, size: number): void => {
      const values = arguments_.get(op)!;
      assert.ok(values.every((value) => Math.abs(Math.abs(value) - size) < 1e-12), `${op}: |argument| = ${size}`);
      const negative = values.filter((value) => value < 0).length / values.length;
      assert.ok(Math.abs(negative - 0.5) < 0.05, `${op}: negative share ${negative}`);
    };
    expectSigned('Rotate', 27);
    expectSigned('ShearX', 0.27);
    expectSigned('ShearY', 0.27);
    expectSigned('TranslateXRel', 0.405);
    expectSigned('TranslateYRel', 0.405);
    // Increasing enhance: 1 +- 0.81; posterize keeps 4 - int(3.6) = 1 bit; solarize at 256 - int(230.4) = 26; solarize_add int(99).
    for (const op of ['ColorIncreasing', 'ContrastIncreasing', 'BrightnessIncreasing', 'SharpnessIncreasing']) {
      const values = new Set(arguments_.get(op)!.map((value) => value.toFixed(6)));
      assert.deepEqual([...values].sort(), ['0.190000', '1.810000'], op);
    }
    assert.deepEqual([...new Set(arguments_.get('PosterizeIncreasing'))], [1]);
    assert.deepEqual([...new Set(arguments_.get('SolarizeIncreasing'))], [26]);
    assert.deepEqual([...new Set(arguments_.get('SolarizeAdd'))], [99]);
    // The plain set at m9: enhance 1.72, posterize int(3.6) = 3 bits, solarize int(230.4) = 230.
    const plain = randAugmentSteps(parseRandAugment('rand-m9-n200-p1'), new Random(3));
    const byOp = (op: string): number[] => plain.filter((step) => step.op === op).map((step) => step.argument!);
    assert.ok(byOp('Color').every((value) => Math.abs(value - 1.72) < 1e-12));
    assert.ok(byOp('Posterize').every((value) => value === 3));
    assert.ok(byOp('Solarize').every((value) => value === 230));
  });

  test('same seed, same bytes; another seed, other bytes; the input is left unchanged', () => {
    const image = testImage(32, 40, 13);
    const before = image.pixels.slice();
    const config = parseRandAugment('rand-m9-mstd0.5-inc1');
    const run = (seed: number): Uint8Array => {
      const random = new Random(seed);
      // Several images in a row from one stream, as a loader draws them.
      return Uint8Array.from(Array.from({ length: 6 }, () => [...randAugment(image, config, random).pixels]).flat());
    };
    assert.deepEqual(run(42), run(42));
    assert.notDeepEqual(run(42), run(43));
    assert.deepEqual(image.pixels, before);
    assert.throws(() => randAugment({ pixels: new Uint8Array(4 * 4 * 4), height: 4, width: 4, channels: 4 }, config, new Random(0)), /1- or 3-channel/);
  });
});

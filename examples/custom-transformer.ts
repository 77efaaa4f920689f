// A custom text transformer trained with MaskSub through the Maskable interface: its forward
// drops a random fraction of the token embeddings (MAE-style, masksub.randomTokenKeep), so the
// sub-model really runs on fewer tokens, and it carries nn.DropPath layers, so PathSub works too.
// Task (generated): is token 1 more frequent than token 2 in a sequence of 24 ids?
// Run: node --conditions=masksub-source --import tsx examples/custom-transformer.ts
import { cat, manualSeed, masksub, nn, noGrad, optim, randint, randn, type Tensor, tidy } from 'masksub';

const VOCABULARY = 12;
const LENGTH = 24;
const WIDTH = 32;

class Block extends nn.Module {
  readonly norm1 = this.registerModule('norm1', new nn.LayerNorm(WIDTH));
  readonly attn = this.registerModule('attn', new nn.Attention(WIDTH, 4, true));
  readonly norm2 = this.registerModule('norm2', new nn.LayerNorm(WIDTH));
  readonly mlp = this.registerModule('mlp', new nn.Mlp(WIDTH, 2 * WIDTH));
  readonly dropPath = this.registerModule('drop_path', new nn.DropPath(0.05));
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const y = x.add(this.dropPath.forward(this.attn.forward(this.norm1.forward(x))));
      return y.add(this.dropPath.forward(this.mlp.forward(this.norm2.forward(y))));
    });
  }
}

class TokenClassifier extends nn.Module implements masksub.Maskable {
  /** forward(ids, { maskRatio }) drops that fraction of the tokens: the step asks, the model does it. */
  readonly masking = 'drop-tokens' as const;
  readonly embed = this.registerModule('embed', new nn.Embedding(VOCABULARY, WIDTH));
  readonly position = this.registerParameter('position', tidy(() => new nn.Parameter(randn([1, LENGTH, WIDTH]).mul(0.02))));
  readonly cls = this.registerParameter('cls', tidy(() => new nn.Parameter(randn([1, 1, WIDTH]).mul(0.02))));
  readonly blocks = this.registerModule('blocks', new nn.ModuleList([new Block(), new Block()]));
  readonly norm = this.registerModule('norm', new nn.LayerNorm(WIDTH));
  readonly head = this.registerModule('head', new nn.Linear(WIDTH, 2));

  forward(ids: Tensor, options: masksub.ForwardOptions = {}): Tensor {
    return tidy(() => {
      let tokens = this.embed.forward(ids).add(this.position);
      // the position is added first, so the kept tokens still know where they were
      if (options.maskRatio) tokens = masksub.randomTokenKeep(tokens, options.maskRatio, options.generator);
      let x = cat([this.cls.expand(tokens.size(0), 1, WIDTH), tokens], 1);
      for (const block of this.blocks) x = block.forward(x);
      return this.head.forward(this.norm.forward(x).select(1, 0));
    });
  }
}

function batch(size: number): { ids: Tensor; labels: Tensor } {
  return tidy(() => {
    const ids = randint(0, VOCABULARY, [size, LENGTH]);
    const ones = ids.eq(1).sum(1);
    const twos = ids.eq(2).sum(1);
    return { ids, labels: ones.gt(twos).to({ dtype: 'int64' }) };
  });
}

function accuracy(model: TokenClassifier, ids: Tensor, labels: Tensor): number {
  model.eval();
  const correct = noGrad(() => tidy(() => (model.forward(ids).argmax(-1).eq(labels).sum().item())));
  model.train();
  return correct / ids.size(0);
}

const steps = Number(process.env.EXAMPLE_STEPS ?? 150);
const results: Record<string, number> = {};
for (const method of ['masksub', 'pathsub'] as const) {
  manualSeed(0);
  const model = new TokenClassifier();
  const optimizer = new optim.AdamW(model.parameters(), { lr: 2e-3, weightDecay: 0.01 });
  const test = batch(512);
  for (let step = 0; step < steps; step++) {
    const { ids, labels } = batch(64);
    // masksub: the sub forward keeps 75% of the tokens; pathsub: more drop-path (strength 0.15) in the sub forward
    const result = masksub.step(model, ids, labels, { method, ratio: method === 'masksub' ? 0.25 : 0.15 });
    optimizer.step();
    optimizer.zeroGrad();
    ids.dispose();
    labels.dispose();
    if (!result.finite) throw new Error(`${method}: the loss is not finite at step ${step}`);
  }
  results[method] = accuracy(model, test.ids, test.labels);
  console.log(`${method}: test accuracy ${(100 * results[method]).toFixed(1)}% after ${steps} steps`);
}
console.log(JSON.stringify(results));

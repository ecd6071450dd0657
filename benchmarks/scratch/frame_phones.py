# ONE-OFF EXPERIMENT (session 3, 2026-11-26), kept so that the figures in RESULTS.md can be
# reproduced: hard-coded /work/data paths, no tests. Not part of the package.
"""Experiment: frame-level phone targets by CTC forced alignment, then a frame-CE recogniser;
codebook 0 = k-means on its features. Measures knn_voice WER like cb0_content.py."""
import sys, json, time, math, numpy as np, torch, torch.nn.functional as F
from pathlib import Path
torch.set_num_threads(2)
from valle2.codec.mel import MelCodec, MelCodecConfig, build_phone_encoder
from valle2.codec.mel_train import load_features, read_transcripts, phone_targets, kmeans, _utterances, _pad_mels
W = Path('/work/data/codec2'); OUT = Path('/work/data/exp')
cfg = MelCodecConfig(**json.loads((W / 'codec_config.json').read_text()))
ctc = build_phone_encoder(cfg); ctc.load_state_dict(torch.load(W / 'phone_ckpt.pt', weights_only=True)['model']); ctc.eval()
tr = load_features(W / 'features_train.npz')
texts = read_transcripts(Path('/work/data/corpus'), 'train')
inv, targets = phone_targets(texts)

def align(logp, tgt):
    """CTC Viterbi: logp (T, C), tgt list of ids -> per-frame label (0 = blank -> filled later)."""
    L = len(tgt); S = 2 * L + 1
    ext = torch.zeros(S, dtype=torch.long); ext[1::2] = torch.tensor(tgt)
    T = logp.shape[0]
    NEG = -1e9
    dp = torch.full((S,), NEG); dp[0] = logp[0, 0]; dp[1] = logp[0, ext[1]]
    can2 = torch.zeros(S, dtype=torch.bool)
    can2[2:] = (ext[2:] != 0) & (ext[2:] != ext[:-2])
    back = torch.zeros(T, S, dtype=torch.long)
    em = logp[:, ext]  # (T, S)
    for t in range(1, T):
        a = dp
        b = torch.cat([torch.tensor([NEG]), dp[:-1]])
        c = torch.cat([torch.tensor([NEG, NEG]), dp[:-2]]); c = torch.where(can2, c, torch.tensor(NEG))
        stack = torch.stack([a, b, c]); best, arg = stack.max(0)
        back[t] = arg; dp = best + em[t]
    s = S - 1 if dp[S - 1] >= dp[S - 2] else S - 2
    path = [0] * T
    for t in range(T - 1, -1, -1):
        path[t] = s
        s -= int(back[t, s])
    lab = ext[torch.tensor(path)]
    # blank frames: the phone of the previous non-blank state; before the first and after the
    # last phone: silence (0)
    out = lab.clone(); cur = 0
    for t in range(T):
        if lab[t] != 0:
            cur = int(lab[t])
        out[t] = 0 if path[t] in (0, S - 1) else cur
    return out
    return out

t0 = time.time()
labels = np.zeros(tr['mels'].shape[1], dtype=np.int64)
with torch.inference_mode():
    for n, (rid, a, b) in enumerate(_utterances(tr)):
        if rid not in targets: continue
        lp = ctc(torch.from_numpy(tr['mels'][:, a:b].astype(np.float32))[None])[0]
        labels[a:b] = align(lp, targets[rid]).numpy()
        if n % 1000 == 0: print('aligned', n, time.time() - t0, flush=True)
np.save(OUT / 'frame_labels.npy', labels)
print('aligned all', time.time() - t0, 'sil fraction', (labels == 0).mean(), flush=True)

# frame-level CE fine-tune of the recogniser (start from the CTC weights; class 0 = silence)
enc = build_phone_encoder(cfg); enc.load_state_dict(ctc.state_dict()); enc.train()
opt = torch.optim.AdamW(enc.parameters(), lr=1e-3, weight_decay=0.01)
utts = list(_utterances(tr)); rng = np.random.default_rng(0)
minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 10
t_end = time.time() + minutes * 60; step = 0
while time.time() < t_end:
    pick = [utts[i] for i in rng.choice(len(utts), 24, replace=False)]
    mel, lengths = _pad_mels([tr['mels'][:, a:b] for _, a, b in pick])
    lab = torch.full(mel.shape[::2], -100, dtype=torch.long)
    for i, (_, a, b) in enumerate(pick): lab[i, : b - a] = torch.from_numpy(labels[a:b])
    logits = enc.head(enc.features(mel, lengths))
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), lab.reshape(-1), ignore_index=-100)
    opt.zero_grad(); loss.backward(); opt.step(); step += 1
    if step % 50 == 0:
        acc = (logits.argmax(-1) == lab).float().sum() / (lab != -100).sum()
        print('step', step, 'ce', round(loss.item(), 4), 'frame acc', round(acc.item(), 3), flush=True)
torch.save({'model': enc.state_dict()}, OUT / 'frame_enc.pt')
print('saved', step, flush=True)

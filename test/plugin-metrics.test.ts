import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pluginMetric } from '../core/events.js';
import { pluginMetrics } from '../core/plugin-metrics.js';

describe('scope.metrics: metrics of a plugin of its own', () => {
  it('publishes prefixed names with the server label first, only when someone listens', () => {
    const seen: object[] = [];
    const metrics = pluginMetrics('who-ami', 'example.org.');
    const counter = metrics.counter('answers_total', 'Answers.', ['transport']);
    const gauge = metrics.gauge('entries', 'Entries.');
    counter.inc({ transport: 'udp' });
    assert.equal(seen.length, 0, 'nothing to publish to yet');
    const listen = (m: object) => void seen.push(m);
    pluginMetric.subscribe(listen);
    try {
      counter.inc({ transport: 'tcp' }, 2);
      gauge.set(7);
    } finally {
      pluginMetric.unsubscribe(listen);
    }
    assert.deepEqual(seen, [
      { type: 'counter', name: 'veil_plugin_who_ami_answers_total', help: 'Answers.', labelNames: ['server', 'transport'], labelValues: ['example.org.', 'tcp'], value: 2 },
      { type: 'gauge', name: 'veil_plugin_who_ami_entries', help: 'Entries.', labelNames: ['server'], labelValues: ['example.org.'], value: 7 },
    ]);
  });

  it('refuses names Prometheus would not take, and the server label', () => {
    const metrics = pluginMetrics('x', '.');
    assert.throws(() => metrics.counter('Answers', 'h'), /metric name "Answers"/);
    assert.throws(() => metrics.counter('a-b', 'h'), /metric name "a-b"/);
    assert.throws(() => metrics.gauge('g', 'h', ['bad label']), /label name "bad label"/);
    assert.throws(() => metrics.gauge('g', 'h', ['__reserved']), /label name "__reserved"/);
    assert.throws(() => metrics.counter('c_total', 'h', ['server']), /label "server" of c_total is Veil's/);
  });
});

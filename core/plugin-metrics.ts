/**
 * Metrics of a plugin's own, given to it as `scope.metrics`. A plugin defines counters and
 * gauges by short names; they are exposed as `veil_plugin_<plugin>_<name>` with a `server`
 * label for the block. Values travel on the `veil:plugin:metric` diagnostics channel, so a
 * plugin does not depend on the metrics plugin: without it (or without subscribers) an update
 * costs one check.
 */
import { pluginMetric } from './events.js';

export type MetricLabels = Record<string, string>;

export interface PluginCounter {
  inc(labels?: MetricLabels, by?: number): void;
}

export interface PluginGauge {
  set(value: number, labels?: MetricLabels): void;
}

export interface PluginMetrics {
  /** A counter `veil_plugin_<plugin>_<name>`; `name` should end in `_total`. */
  counter(name: string, help: string, labelNames?: readonly string[]): PluginCounter;
  gauge(name: string, help: string, labelNames?: readonly string[]): PluginGauge;
}

const METRIC_NAME = /^[a-z_][a-z0-9_]*$/;

/** Mistakes in a definition are the plugin's bugs: they throw when the plugin is created. */
function checkNames(plugin: string, name: string, labelNames: readonly string[]): void {
  if (!METRIC_NAME.test(name)) throw new Error(`plugin ${plugin}: metric name "${name}" must be lower case letters, digits and _`);
  for (const label of labelNames) {
    if (!METRIC_NAME.test(label) || label.startsWith('__')) throw new Error(`plugin ${plugin}: label name "${label}" of ${name} must be lower case letters, digits and _`);
    if (label === 'server') throw new Error(`plugin ${plugin}: label "server" of ${name} is Veil's (the server block)`);
  }
}

export function pluginMetrics(plugin: string, server: string): PluginMetrics {
  const prefix = `veil_plugin_${plugin.replace(/[^a-z0-9_]/g, '_')}_`;
  const define = (type: 'counter' | 'gauge', name: string, help: string, labelNames: readonly string[]) => {
    checkNames(plugin, name, labelNames);
    const fullName = prefix + name;
    const names = ['server', ...labelNames];
    return (value: number, labels: MetricLabels = {}) => {
      if (!pluginMetric.hasSubscribers) return;
      const values = [server, ...labelNames.map((l) => labels[l] ?? '')];
      pluginMetric.publish({ type, name: fullName, help, labelNames: names, labelValues: values, value });
    };
  };
  return {
    counter(name, help, labelNames = []) {
      const publish = define('counter', name, help, labelNames);
      return { inc: (labels, by = 1) => publish(by, labels) };
    },
    gauge(name, help, labelNames = []) {
      const publish = define('gauge', name, help, labelNames);
      return { set: (value, labels) => publish(value, labels) };
    },
  };
}

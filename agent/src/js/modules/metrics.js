// k6/metrics: Counter, Gauge, Rate, Trend (declared in the init context).
import * as host from 'barrage:host';

class Metric {
  constructor(type, name, isTime) {
    if (typeof name !== 'string' || name === '') {
      throw new TypeError('a metric needs a name');
    }
    this.name = name;
    this.type = type;
    this._id = host.metricDefine(type, name, !!isTime);
  }
  add(value, tags) {
    return host.metricAdd(this._id, value, tags);
  }
}

export class Counter extends Metric { constructor(name) { super('counter', name, false); } }
export class Gauge extends Metric { constructor(name) { super('gauge', name, false); } }
export class Rate extends Metric { constructor(name) { super('rate', name, false); } }
export class Trend extends Metric { constructor(name, isTime) { super('trend', name, isTime); } }

export default { Counter, Gauge, Rate, Trend };

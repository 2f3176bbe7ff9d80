// Vendored by Barrage: k6-utils 1.3.0, served at https://jslib.k6.io/k6-utils/1.3.0/index.js
// Source: github.com/grafana/k6-jslib-utils src/stages.js and src/utils.js at tag v1.3.0
// (the sources of the published webpack bundle, per its source map), joined into one
// ES module in place of the CommonJS bundle; the code itself is unmodified.
// Copyright Grafana Labs. Licensed under the Apache License, Version 2.0
// (see LICENSE and NOTICE in this folder).

// --- src/stages.js ---
import exec from 'k6/execution'

// parseDuration parses the provided string as an Integer number
// in millisecond precision
function parseDuration(str) {
	if (str == null || str.length < 1) {
		throw new Error('str is empty')
	}

	// the sum in millisecond of the parsed duration
	let d = 0;

	// current contains the partial seen number
	// it's reset when a time unit is found
	let current = '';

	
	// it tracks the seen time units
	// and it denies eventual duplicated
	let seen = {}

	for (let i = 0; i < str.length; i++) {
		// append the current char if it's a number or a decimal separator
		if (isNumber(str[i]) || str[i] == '.') {
			current += str[i]
		}

		// return if the next char is not a time unit 
		if (str[i+1] == null || isNumber(str[i+1]) || str[i+1] == '.') {
			continue
		}
	
		let v = parseFloat(current, 10)
		let next = str[i+1]
		
		switch (next) {
			case 'd':
				d += v*24*60*60*1000
				break;
			case 'h':
				d += v*60*60*1000
				break;
			case 'm':
				if (i + 2 < str.length && str[i+2] == 's') {
					// millisecond is the maximum precision
					// truncate eventual decimal
					d += Math.trunc(v)
					i++
					next = 'ms'
				} else {
					d += v*60*1000
				}
				break;
			case 's':
				d += v*1000
				break;
			default:
				throw new Error(`${next} is an unsupported time unit`)
		}
		if (seen[next]) {
			throw new Error(`${next} time unit is provided multiple times`)
		}
		seen[next] = true
		i++
		current = ''
	}
	// flush in case no time unit has been provided
	// for the latest group
	if (current.length > 0) {
		d += parseFloat(current, 10)
	}
	return d 
}

// isNumber return true if the c character is a number
function isNumber(c) {
	return c >= '0' && c <= '9'
}

// getCurrentStageIndex returns the computed index of the running stage.
function getCurrentStageIndex() {
	if (exec == undefined || exec.test == undefined || exec.test.options == undefined) {
		throw new Error(`k6/execution.test.options is undefined - getCurrentStageIndex requires a k6 v0.38.0 or later. Please, upgrade for getting k6/execution.test.options supported.`)

	}

	let scenario = exec.test.options.scenarios[exec.scenario.name]
	if (scenario == null)	{
		throw new Error(`the exec.test.options object doesn't contain the current scenario ${exec.scenario.name}`)
	}
	if (scenario.stages == null) {
		throw new Error(`only ramping-vus or ramping-arravial-rate supports stages, it is not possible to get a stage index on other executors.`)
	}

	if (scenario.stages.length < 1) {
		throw new Error(`the current scenario ${scenario.name} doesn't contain any stage`)
	}

	let sum = 0;
	let elapsed = new Date() - exec.scenario.startTime
	for (let i = 0; i < scenario.stages.length; i++) {
		sum += parseDuration(scenario.stages[i].duration)
		if (elapsed < sum) {
			return i
		}
	}

	return scenario.stages.length-1
}

// tagWithCurrentStageIndex adds a tag with a `stage` key
// and the index of the current running stage as value.
function tagWithCurrentStageIndex() {
  exec.vu.tags['stage'] = getCurrentStageIndex()
}

// tagWithCurrentStageProfile adds a tag with a `stage` key
// and the profile (ramp-up, steady or ramp-down) computed
// from the current running stage.
function tagWithCurrentStageProfile() {
  //ramp-up when previous.target < current.target
  //ramp-down when previous.target > current.target
  //steady when prevuious.target = current.target
	
	let getStageProfile = function() {	
		let currentIndex = getCurrentStageIndex()
		if (currentIndex < 1) {
			return 'ramp-up'
		}

		let stages = exec.test.options.scenarios[exec.scenario.name].stages
		let current = stages[currentIndex]
		let previous = stages[currentIndex-1] 

		if (current.target  > previous.target) {
			return 'ramp-up'
		}
		
		if (previous.target == current.target) {
			return 'steady'
		}

		return 'ramp-down'
	}

  exec.vu.tags['stage_profile'] = getStageProfile()
}

export {
	parseDuration,
	getCurrentStageIndex,
	tagWithCurrentStageIndex,
	tagWithCurrentStageProfile,
}

// --- src/utils.js ---
export function uuidv4() {
  return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, function(c) {
    let r = Math.random() * 16 | 0, v = c === 'x' ? r : (r & 0x3 | 0x8);
    return v.toString(16);
  });
}

export function randomIntBetween(min, max) { // min and max included
  return Math.floor(Math.random() * (max - min + 1) + min);
}

export function randomItem(arrayOfItems){
  return arrayOfItems[Math.floor(Math.random() * arrayOfItems.length)];
}

export function randomString(length, charset='abcdefghijklmnopqrstuvwxyz') {
  let res = '';
  while (length--) res += charset[(Math.random() * charset.length) | 0];
  return res;
}

export function findBetween(content, left, right, repeat = false) {
  const extracted = [];
  let doSearch = true;
  let start, end = 0;
  
  while (doSearch) {
    start = content.indexOf(left);
    if (start == -1) {
      break; // no more matches
    }

    start += left.length;
    end = content.indexOf(right, start);
    if (end == -1) {
      break; // no more matches
    }
    let extractedContent = content.substring(start, end);

    // stop here if only extracting one match (default behavior)
    if (!repeat) {
      return extractedContent; 
    }

    // otherwise, add it to the array
    extracted.push(extractedContent);
    
    // update the "cursor" position to the end of the previous match
    content = content.substring(end + right.length);
  }

  return extracted.length ? extracted : null; // return all matches as an array or null
}

export function normalDistributionStages(maxVus, durationSeconds, numberOfStages=10) {
  function normalDensity(mean, scale, x) {
    return Math.exp(-1 / 2 * Math.pow((x - mean) / scale, 2)) / (scale * Math.sqrt(2 * Math.PI));
  }

  const mean = 0;
  const scale = 1;
  let curve = new Array(numberOfStages + 2).fill(0);
  let durations = new Array(numberOfStages + 2).fill(Math.ceil(durationSeconds / 6));
  let k6stages = [];

  for (let i = 0; i <= numberOfStages; i++) {
    curve[i] = normalDensity(mean, scale, -2 * scale + 4 * scale * i / numberOfStages);
  }

  let peakDistribution = Math.max(...curve);

  let vus = curve.map(x => Math.round(x * maxVus / peakDistribution));

  for (let j = 1; j <= numberOfStages; j++) {
    durations[j] = Math.ceil(4 * durationSeconds / (6 * numberOfStages));
  }

  for (let k = 0; k <= numberOfStages + 1; k++) {
    k6stages.push({duration: `${durations[k]}s`, target: vus[k]});
  }

  return k6stages;
}

// An endless loop in the init code.
let i = 0;
while (true) {
  i++;
}

export default function () {}

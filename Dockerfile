# Build stage: compile TypeScript with the dev dependencies.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
# The image's own Node runs tsc: npx would find the npm "node" package's binary, which
# --ignore-scripts left uninstalled.
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json

# Runtime stage: production dependencies and the compiled code only, as a non-root user.
FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /opt/authmilter
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY config/authmilter.example.yaml /etc/authmilter/authmilter.example.yaml
USER node
EXPOSE 8891
# Inside a container the milter must listen beyond loopback; publish it to the host's
# loopback only: docker run -p 127.0.0.1:8891:8891 ...
HEALTHCHECK --interval=30s --timeout=5s CMD node -e "require('net').connect(8891,'127.0.0.1').on('connect',function(){this.end();process.exit(0)}).on('error',()=>process.exit(1))"
ENTRYPOINT ["node", "/opt/authmilter/dist/cli/main.js"]
CMD ["serve", "--socket", "inet:8891@0.0.0.0"]
